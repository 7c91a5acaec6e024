"""The run store: one folder per run. This is the only module that knows the folder layout.

    runs/
      .locks/<name>.lock     flock held by the one process that trains <name>, for that process's whole
                             life (the kernel drops it when the process dies, even on kill -9: no stale lock)
      .creating-<name>-*/    a run being created: it appears under <name> only complete (atomic rename);
                             one left by a killed creator is removed by the next create after an hour
      <name>/                a run name is a name (letters, digits, '-', '_', '.'), never a path
        config.json          the full Config (temp file, fsync, atomic rename)
        status.json          state, pid, host, heartbeat, step, error (read-modify-write under
                             .status.lock, then atomic rename); unreadable = the run is shown "damaged"
                             (a resume rewrites it and keeps the old file as status.json.damaged-<time>)
        metrics.jsonl        append-only records: {"kind": "train"|"eval"|..., "step": ..., ...}
        metrics.discarded.jsonl  lines taken out of metrics.jsonl when a session starts: a torn last
                             line, and on resume the records logged after the checkpoint (they are
                             redone). Nothing is deleted; each batch starts with a {"kind": "discarded"} line.
        log.txt              stdout/stderr of the training process (when started as a job, uegr/jobs.py)
        STOP                 present = stop requested (also honoured by a queued run before it starts)
        checkpoints/last  -> .last@0000120-<id>   a symlink, swapped atomically (os.replace) to a folder
        checkpoints/best  -> .best@0000100-<id>   that was written as <folder>.tmp, fsynced and renamed
                             complete; the old folder is deleted after the swap. So `last` is loadable at
                             every instant; a complete folder left unlinked by a crash is adopted on resume.
                             Each: model.safetensors + tokenizer + labels (+ trainer_state.pt for last)
        saliency/            step_XXXXXXX.json (per-tensor summaries) + .safetensors (downsampled maps)
        analyses/            attack/landscape/eval results: <name>.json = the latest of each kind, attack
                             records in attack-<recipe>-<split>/; analyses/history/<name>/<time>-<id>.json
                             keeps every result
      _uploads/<sha256>/<file>  files uploaded in the app, content-addressed and read-only
      _external/<folder>-<hash>/analyses/  `uegr attack` results on a classifier folder that is not a run
      _jobs/<id>/            one background job (uegr/jobs.py: training, attack, probe, sweep), any run:
        job.json             argv, kind, labels (run, recipe, study...), pid + its start tick, host, started
        log.txt              the job's stdout/stderr (a training job writes its run's log.txt instead)
        progress.json        {step, total, eta_s, message, updated}, written by the job itself
        STOP                 present = stop requested (the job polls it; SIGTERM is the fallback)
        exit.json            {state, code, ended}: written by the job as it exits, or by the reaper
                             (state interrupted) when its process is gone without one (kill -9)
      sweeps/                the default Optuna storage and one folder per study (uegr/sweep/)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import Config

STATES = ("queued", "running", "completed", "failed", "stopped", "interrupted", "damaged")
FINISHED = ("completed", "failed", "stopped", "interrupted")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
LOCKS = ".locks"
DISCARDED = "metrics.discarded.jsonl"


class RunError(ValueError):
    pass


class RunBusy(RunError):
    """Another process holds the run's lock (it is training or being resumed)."""


def default_root() -> Path:
    return Path(os.environ.get("UEGR_HOME", "runs")).expanduser()


def check_name(name: str) -> str:
    """A run name is a folder name inside the runs dir, never a path (so it cannot write outside it)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise RunError(f"run name {name!r} is not allowed: a run name is a name, not a path; use letters, "
                       "digits, '-', '_' or '.' (at most 100 characters), e.g. --name my-run")
    return name


# ---------------------------------------------------------------------------------------------- durable files
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(fd)


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident() % 10**6}.tmp")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file, fsync, rename over `path`: readers see the old or the new file, never half."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _atomic_write(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_tree(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(folder)


def _lock(path: Path, timeout: float, reentrant: bool = False):
    """An acquired FileLock (flock). reentrant: one shared instance per path in this process, so the CLI and
    the Trainer it starts can both take the run's lock; otherwise a fresh one that excludes other threads too."""
    from filelock import FileLock

    if reentrant:  # the run lock lives in runs/.locks/, made on first use; a status lock needs its run folder
        path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), thread_local=False, is_singleton=True) if reentrant else FileLock(str(path))
    lock.acquire(timeout=timeout)
    return lock


class _NoLock(contextlib.nullcontext):
    def release(self) -> None:
        pass


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


class MetricsReader:
    """Incremental reader of an append-only JSONL file: each call returns only new, complete lines.

    When a resume rewrites the file (records after the checkpoint moved aside), the reader starts over:
    `rewinds` counts those restarts so incremental consumers can drop what they built."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0
        self.records: list[dict] = []
        self.rewinds = 0
        self._ino: int | None = None

    def poll(self) -> list[dict]:
        try:
            with self.path.open("rb") as fh:
                ino = os.fstat(fh.fileno()).st_ino
                if self._ino is not None and ino != self._ino:
                    self.offset, self.records, self.rewinds = 0, [], self.rewinds + 1
                self._ino = ino
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []  # only a half-written last line so far
        new = []
        for line in chunk[: end + 1].splitlines():
            try:
                new.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn line from a killed writer: skip it, never crash
        self.offset += end + 1
        self.records.extend(new)
        return new


def _step_of(folder: Path) -> int:
    """The step in a checkpoint version folder's name (.last@0000120-ab12cd), -1 if none."""
    m = re.search(r"@(\d+)", folder.name)
    return int(m.group(1)) if m else -1


@dataclass
class Run:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def store_root(self) -> Path:
        return self.path.parent

    # ---------------------------------------------------------------- lock (one process per run)
    @property
    def lock_path(self) -> Path:
        return self.store_root / LOCKS / f"{self.name}.lock"

    def lock(self, timeout: float = 0.5):
        """Take the run's lock (a FileLock; release it, or use it as a context manager). RunBusy if held."""
        from filelock import Timeout

        if int(os.environ.get("RANK") or 0) > 0:
            return _NoLock()  # data-parallel ranks > 0: rank 0 holds the run's lock for all of them
        try:
            return _lock(self.lock_path, timeout, reentrant=True)
        except Timeout:
            st = self.raw_status()
            who = f"pid {st.get('pid')} on {st.get('host')}" if st.get("state") == "running" else "another process"
            raise RunBusy(f"run {self.name!r} is in use by {who} (lock {self.lock_path}); wait for it to end "
                          f"or stop it with `uegr stop {self.name}`, then try again") from None

    def is_locked(self) -> bool:
        """Whether some process (this one included) holds the run's lock right now."""
        import fcntl

        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)  # closing drops a probe lock we may have taken
        return False

    # ---------------------------------------------------------------- config
    def config(self) -> Config:
        path = self.path / "config.json"
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            return Config.from_dict(raw)
        except FileNotFoundError:
            raise RunError(f"{path} is missing: run {self.name!r} is damaged; restore the file from a copy, "
                           "or start a new run") from None
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
            raise RunError(f"{path} is damaged ({str(exc)[:160]}); restore it from a copy, or start a new "
                           "run with the same settings") from None
        except OSError as exc:  # a folder in its place, no permission to read
            raise RunError(f"{path} cannot be read ({exc.strerror}); restore the file from a copy") from None

    def write_config(self, cfg: Config) -> None:
        _atomic_write(self.path / "config.json", cfg.to_json())

    # ---------------------------------------------------------------- status
    def _read_status_file(self) -> dict:
        """The parsed status.json, or raises RunError naming the file."""
        path = self.path / "status.json"
        try:
            st = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunError(f"{path} is missing") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise RunError(f"{path} is damaged ({str(exc)[:120]})") from None
        except OSError as exc:
            raise RunError(f"{path} cannot be read ({exc.strerror})") from None
        if not isinstance(st, dict) or st.get("state") not in STATES:
            raise RunError(f"{path} is damaged (no valid 'state')")
        return st

    def raw_status(self) -> dict:
        try:
            return self._read_status_file()
        except RunError as exc:
            # Never guess "queued" for a run that may have finished: say it is damaged, and why.
            return {"state": "damaged", "error": f"{exc}; resume the run to rewrite it "
                                                 f"(`uegr train --name {self.name} --resume`)"}

    def status(self) -> dict:
        """The status record; a 'running' run whose process is gone is reported as interrupted."""
        st = self.raw_status()
        if st.get("state") == "queued" and st.get("pid") and st.get("host") == socket.gethostname() and \
                not pid_alive(st["pid"]):
            st["state"] = "interrupted"
            st["error"] = st.get("error") or ("the training process ended while it was starting (killed or "
                                              "crashed); start it again with --resume")
        if st.get("state") == "running":
            same_host = st.get("host") == socket.gethostname()
            if same_host:
                # The lock is released by the kernel when its process dies, so a free lock (or a dead pid)
                # means a stale "running" record, even if the pid was since reused.
                dead = not pid_alive(st.get("pid")) or (self.lock_path.exists() and not self.is_locked())
            else:
                dead = time.time() - st.get("heartbeat", 0) > 300
            if dead:
                st["state"] = "interrupted"
                st["error"] = st.get("error") or ("the training process ended without writing a final status "
                                                  "(killed, crashed or the machine restarted); resume with --resume")
        return st

    def set_status(self, **fields) -> dict:
        """Read-modify-write of status.json under a lock (the app and the training process both write it)."""
        with _lock(self.path / ".status.lock", timeout=30):
            try:
                st = self._read_status_file()
            except RunError:
                st = {}
                damaged = self.path / "status.json"
                if damaged.exists():  # keep what was there: nothing a run wrote is thrown away
                    with contextlib.suppress(OSError):
                        os.replace(damaged, self.path / f"status.json.damaged-{int(time.time())}")
            st.update(fields)
            st["updated"] = time.time()
            _atomic_write(self.path / "status.json", json.dumps(st, indent=1))
        return st

    # ---------------------------------------------------------------- metrics
    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def append_metrics(self, records: list[dict]) -> None:
        if not records:
            return
        with self.metrics_path.open("a", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(r) + "\n" for r in records))
            fh.flush()

    def metrics(self, kind: str | None = None) -> list[dict]:
        recs = MetricsReader(self.metrics_path)
        recs.poll()
        return [r for r in recs.records if kind is None or r.get("kind") == kind]

    def reader(self) -> MetricsReader:
        return MetricsReader(self.metrics_path)

    def trim_metrics(self, keep_through_step: int | None) -> int:
        """Before a session appends: move a torn last line, unreadable lines and (on resume, given the
        checkpoint's step) every record logged after that step into metrics.discarded.jsonl, so records are
        never glued together nor logged twice. Returns the number of lines moved; nothing is deleted."""
        try:
            data = self.metrics_path.read_bytes()
        except FileNotFoundError:
            return 0
        lines = data.splitlines(keepends=True)
        keep, moved = [], []
        for line in lines:
            try:
                rec = json.loads(line) if line.endswith(b"\n") else None
            except (ValueError, UnicodeDecodeError):
                rec = None
            late = isinstance(rec, dict) and keep_through_step is not None and (rec.get("step") or 0) > keep_through_step
            if rec is None or late:
                moved.append(line if line.endswith(b"\n") else line + b"\n")
            else:
                keep.append(line)
        if not moved:
            return 0
        header = json.dumps({"kind": "discarded", "time": time.time(), "lines": len(moved),
                             "reason": f"a session started at step {keep_through_step or 0}: lines after that "
                                       "step (redone) or unreadable"}) + "\n"
        # Side file first (fsynced), then replace: a crash in between duplicates lines there, never loses them.
        with (self.path / DISCARDED).open("ab") as fh:
            fh.write(header.encode() + b"".join(moved))
            fh.flush()
            os.fsync(fh.fileno())
        atomic_write_bytes(self.metrics_path, b"".join(keep))
        return len(moved)

    # ---------------------------------------------------------------- control
    @property
    def stop_path(self) -> Path:
        return self.path / "STOP"

    def request_stop(self) -> str:
        """Ask the run to stop; returns its state. A queued run stops before it trains; a run with no live
        process (finished, interrupted, damaged) is left as it is and nothing is written."""
        st = self.status()
        state = st.get("state")
        if state not in ("queued", "running"):
            return state
        _atomic_write(self.stop_path, str(time.time()))
        if state == "queued" and not pid_alive(st.get("launcher_pid")) and not self.is_locked():
            # Nobody is about to start it: mark it stopped now (a starting process still sees STOP).
            self.set_status(state="stopped", error=None, ended=time.time(),
                            note="stopped while queued, before training started")
            return "stopped"
        return state

    def stop_requested(self, since: float | None = None) -> bool:
        """A STOP file exists (written after `since`, when given)."""
        try:
            written = self.stop_path.stat().st_mtime
        except FileNotFoundError:
            return False
        return since is None or written >= since

    def clear_stop(self) -> None:
        self.stop_path.unlink(missing_ok=True)

    @property
    def log_path(self) -> Path:
        return self.path / "log.txt"

    def log_tail(self, lines: int = 40) -> str:
        try:
            data = self.log_path.read_bytes()[-20000:]
        except FileNotFoundError:
            return ""
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    # ---------------------------------------------------------------- checkpoints
    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    def _versions(self, which: str) -> list[Path]:
        """Complete checkpoint folders of `which` (linked or not), oldest first."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = [p for p in self.checkpoints_dir.glob(f".{which}@*") if p.is_dir() and not p.name.endswith(".tmp")]
        return sorted(found, key=lambda p: (_step_of(p), p.stat().st_mtime))

    def checkpoint_dir(self, which: str = "last") -> Path:
        link = self.checkpoints_dir / which
        if not link.exists():  # a crash before the first link: read the newest complete folder
            versions = self._versions(which)
            if versions:
                return versions[-1]
        return link

    def has_checkpoint(self, which: str = "last") -> bool:
        return (self.checkpoint_dir(which) / "config.json").is_file()

    def best_checkpoint(self) -> Path:
        for which in ("best", "last"):
            if self.has_checkpoint(which):
                return self.checkpoint_dir(which)
        raise RunError(f"run {self.name!r} has no checkpoint yet")

    def write_checkpoint(self, which: str, step: int, write: Callable[[Path], None]) -> Path:
        """Crash-safe replace of checkpoints/<which>: `write(folder)` fills a temporary folder, which is
        fsynced, renamed complete, then linked by an atomic symlink swap; only then is the old one deleted."""
        ckdir = self.checkpoints_dir
        ckdir.mkdir(exist_ok=True)
        final = ckdir / f".{which}@{step:07d}-{uuid.uuid4().hex[:8]}"
        tmp = final.with_name(final.name + ".tmp")
        link_tmp = ckdir / f".{which}.link-{uuid.uuid4().hex[:8]}"
        try:
            write(tmp)
            _fsync_tree(tmp)
            os.rename(tmp, final)
            _fsync_dir(ckdir)
            self._link(which, final, link_tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            with contextlib.suppress(OSError):
                link_tmp.unlink()
            raise
        self._drop_unlinked(which)
        return ckdir / which

    def _link(self, which: str, target: Path, link_tmp: Path | None = None) -> None:
        ckdir = self.checkpoints_dir
        link = ckdir / which
        if link.is_dir() and not link.is_symlink():  # a folder written by an older version: keep it as a version
            os.rename(link, ckdir / f".{which}@{self._legacy_step(link):07d}-legacy")
        link_tmp = link_tmp or ckdir / f".{which}.link-{uuid.uuid4().hex[:8]}"
        os.symlink(target.name, link_tmp)
        os.replace(link_tmp, link)
        _fsync_dir(ckdir)

    @staticmethod
    def _legacy_step(folder: Path) -> int:
        try:
            import torch

            return int(torch.load(folder / "trainer_state.pt", weights_only=True)["step"])
        except Exception:  # noqa: BLE001 - a best folder has no trainer state: order it first
            return 0

    def _drop_unlinked(self, which: str) -> None:
        ckdir = self.checkpoints_dir
        current = os.readlink(ckdir / which) if (ckdir / which).is_symlink() else None
        for p in ckdir.glob(f".{which}@*"):
            if p.name != current:
                shutil.rmtree(p, ignore_errors=True)
        for p in ckdir.glob(f".{which}.link-*"):
            with contextlib.suppress(OSError):
                p.unlink()

    def recover_checkpoints(self) -> list[str]:
        """Call with the run's lock held, before a session: link the newest complete checkpoint folder
        (a crash may have left one complete but unlinked, or an older version's complete `.last.tmp`),
        then delete partial and superseded folders. Returns what was done, for the log."""
        notes = []
        ckdir = self.checkpoints_dir
        if not ckdir.is_dir():
            return notes
        for which in ("last", "best"):
            link = ckdir / which
            legacy_tmp = ckdir / f".{which}.tmp"
            if not link.exists() and legacy_tmp.is_dir() and (legacy_tmp / "model.safetensors").is_file() and \
                    (legacy_tmp / "config.json").is_file() and \
                    (which == "best" or (legacy_tmp / "trainer_state.pt").is_file()):
                os.rename(legacy_tmp, ckdir / f".{which}@{self._legacy_step(legacy_tmp):07d}-recovered")
                notes.append(f"recovered the complete temporary copy {legacy_tmp.name}")
            versions = self._versions(which)
            current = link.resolve() if link.is_symlink() and link.exists() else None
            if versions and (current is None or _step_of(versions[-1]) > _step_of(current)) and \
                    not (link.is_dir() and not link.is_symlink()):
                self._link(which, versions[-1])
                notes.append(f"checkpoints/{which} -> {versions[-1].name} (complete, step {_step_of(versions[-1])})")
            if link.is_symlink():
                self._drop_unlinked(which)
            shutil.rmtree(legacy_tmp, ignore_errors=True)
            for p in ckdir.glob(f".{which}@*.tmp"):
                shutil.rmtree(p, ignore_errors=True)
        return notes

    def resume_checkpoint(self) -> Path | None:
        """The folder a resume loads, read-only: the newest complete `last`, linked or left unlinked by a
        crash (recover_checkpoints links it once the session starts), or None."""
        ckdir = self.checkpoints_dir
        link = ckdir / "last"
        found = []
        if (link / "config.json").is_file():
            found.append((_step_of(link.resolve()) if link.is_symlink() else self._legacy_step(link), 1, link))
        versions = self._versions("last")
        if versions:
            found.append((_step_of(versions[-1]), 0, versions[-1]))
        legacy = ckdir / ".last.tmp"
        if not found and all((legacy / f).is_file() for f in ("config.json", "model.safetensors", "trainer_state.pt")):
            found.append((self._legacy_step(legacy), 0, legacy))
        return max(found, key=lambda t: t[:2])[2] if found else None

    def checkpoint_problem(self, which: str = "last") -> str | None:
        """Why checkpoints/<which> cannot be loaded (missing or truncated files), or None. Reads headers only."""
        folder = self.checkpoint_dir(which)
        if not folder.exists():
            return None
        for need in ("config.json", "model.safetensors") + (("trainer_state.pt",) if which == "last" else ()):
            if not (folder / need).is_file():
                return f"{folder / need} is missing"
        return safetensors_problem(folder / "model.safetensors")

    # ---------------------------------------------------------------- saliency snapshots
    @property
    def saliency_dir(self) -> Path:
        return self.path / "saliency"

    def write_snapshot(self, step: int, rows: list[dict], maps: dict) -> None:
        from safetensors.torch import save

        self.saliency_dir.mkdir(exist_ok=True)
        stem = self.saliency_dir / f"step_{step:07d}"
        if maps:
            atomic_write_bytes(Path(str(stem) + ".safetensors"), save({k: v.contiguous() for k, v in maps.items()}))
        _atomic_write(Path(str(stem) + ".json"), json.dumps({"step": step, "tensors": rows}))

    def snapshot_steps(self) -> list[int]:
        if not self.saliency_dir.is_dir():
            return []
        return sorted(int(p.stem.split("_")[1]) for p in self.saliency_dir.glob("step_*.json"))

    def read_snapshot(self, step: int, with_maps: bool = False) -> dict:
        stem = self.saliency_dir / f"step_{step:07d}"
        out = json.loads(Path(str(stem) + ".json").read_text(encoding="utf-8"))
        if with_maps and Path(str(stem) + ".safetensors").is_file():
            from safetensors.torch import load_file

            out["maps"] = load_file(str(stem) + ".safetensors")
        return out

    # ---------------------------------------------------------------- analyses (attacks, landscape)
    @property
    def analyses_dir(self) -> Path:
        d = self.path / "analyses"
        d.mkdir(exist_ok=True)
        return d

    def write_analysis(self, name: str, payload: dict) -> Path:
        """Save a result as analyses/<name>.json (the latest, read by every page) and, never overwritten,
        as analyses/history/<name>/<time>-<id>.json; a latest file written before histories existed is
        moved into the history first, so no earlier result is lost."""
        path = self.analyses_dir / f"{name}.json"
        hist = self.history_dir(name)
        if path.is_file() and not any(hist.glob("*.json")):
            self._archive(name, path.read_text(encoding="utf-8"), path.stat().st_mtime)
        text = json.dumps(payload, indent=1)
        self._archive(name, text, time.time())
        _atomic_write(path, text)
        return path

    def history_dir(self, name: str) -> Path:
        # One folder name per analysis, whatever characters it has (eval tags come from file names).
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".")[:120] or "_"
        return self.analyses_dir / "history" / safe

    def _archive(self, name: str, text: str, when: float) -> Path:
        hist = self.history_dir(name)
        hist.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(when)) + f"{when % 1:.6f}"[1:].replace(".", "-")
        path = hist / f"{stamp}-{os.urandom(3).hex()}.json"  # sorts by time; the suffix keeps it unique
        _atomic_write(path, text)
        return path

    def analysis_history(self, name: str) -> list[dict]:
        """Every saved result of one analysis (e.g. 'landscape-hessian'), newest first; each record gets
        "history_id" (its file stem). Unreadable files are skipped."""
        out = []
        hist = self.history_dir(name)
        for p in sorted(hist.glob("*.json"), reverse=True) if hist.is_dir() else []:
            try:
                rec = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(rec, dict):
                out.append({**rec, "history_id": p.stem})
        if not out:  # a result from before histories existed
            latest = self.analyses(name).get(name)
            if latest is not None:
                out.append({**latest, "history_id": "latest"})
        return out

    def analyses(self, prefix: str = "") -> dict[str, dict]:
        out = {}
        for p in sorted(self.analyses_dir.glob(f"{prefix}*.json")):
            try:
                out[p.stem] = json.loads(p.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                continue
        return out

    # ---------------------------------------------------------------- summary
    def problems(self, checkpoints: bool = False) -> list[str]:
        """Damage found in this run's files (config, status and, if asked, checkpoint headers)."""
        out = []
        try:
            self.config()
        except RunError as exc:
            out.append(str(exc))
        try:
            self._read_status_file()
        except RunError as exc:
            out.append(str(exc))
        if checkpoints:
            out += [p for p in (self.checkpoint_problem("last"), self.checkpoint_problem("best")) if p]
        return out

    def summary(self, check_checkpoints: bool = False) -> dict:
        st = self.status()
        try:
            cfg = self.config()
            method, data, model = cfg.method.name, cfg.data.source, cfg.model.name
        except RunError:
            method = data = model = "?"
        problems = self.problems(check_checkpoints) if (check_checkpoints or method == "?") else []
        if problems:
            st = {**st, "state": "damaged", "error": "; ".join(problems)}
        started, ended = st.get("started"), st.get("ended") or (time.time() if st.get("state") == "running" else None)
        return {"name": self.name, "method": method, "data": data, "model": model, "state": st.get("state"),
                "step": st.get("step", 0), "total_steps": st.get("total_steps"),
                "best_score": st.get("best_score"), "best_metric": st.get("best_metric"),
                "duration_s": round(ended - started, 1) if started and ended else None,
                "created": st.get("created"), "error": st.get("error")}


def safetensors_problem(path: Path) -> str | None:
    """None if the safetensors file's header parses and the file is as long as the header says."""
    import struct

    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(8)
            if len(head) < 8:
                return f"{path} is truncated ({size} bytes)"
            n = struct.unpack("<Q", head)[0]
            if n > min(size - 8, 100_000_000):
                return f"{path} is damaged (bad header length)"
            header = json.loads(fh.read(n))
    except FileNotFoundError:
        return f"{path} is missing"
    except (ValueError, UnicodeDecodeError):
        return f"{path} is damaged (unreadable header)"
    except OSError as exc:
        return f"{path} cannot be read ({exc.strerror})"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    if 8 + n + max(ends, default=0) != size:
        return f"{path} is truncated or damaged ({size} bytes, the header expects {8 + n + max(ends, default=0)})"
    return None


class RunStore:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else default_root()

    def create(self, cfg: Config, name: str | None = None) -> Run:
        """A new queued run folder, complete (config + status) before it appears under its name."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(f"cannot create the runs folder {self.root} ({exc.strerror}); choose a writable "
                           "folder with --runs-dir or UEGR_HOME") from None
        if name:
            check_name(name)
        else:
            name = f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.method.name}"
            base, i = name, 1
            while (self.root / name).exists():
                i += 1
                name = f"{base}-{i}"
        path = self.root / name
        if path.exists() or path.is_symlink():
            raise RunError(f"a run named {name!r} already exists in {self.root}; choose another name "
                           "or use --resume") from None
        self._clean_abandoned_creations()
        tmp = self.root / f".creating-{name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            run = Run(tmp)
            run.write_config(cfg)
            run.set_status(state="queued", created=time.time())
            (tmp / ".status.lock").unlink(missing_ok=True)
            os.rename(tmp, path)  # atomic; fails if another launcher created the run meanwhile
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise RunError(f"a run named {name!r} already exists in {self.root}; choose another name "
                               "or use --resume") from None
            raise
        _fsync_dir(self.root)
        return Run(path)

    def _clean_abandoned_creations(self, older_than: float = 3600.0) -> None:
        """Remove .creating-* folders left by a creator killed mid-creation. They hold only a copy of the
        config and a queued status (never training output), and a creation takes milliseconds, so one older
        than an hour is abandoned."""
        cutoff = time.time() - older_than
        for p in self.root.glob(".creating-*"):
            with contextlib.suppress(OSError):
                if p.is_dir() and not p.is_symlink() and p.stat().st_mtime < cutoff:
                    shutil.rmtree(p)

    def lock(self, name: str, timeout: float = 0.5):
        """The lock of run `name`, which need not exist yet (taken before creating it)."""
        return Run(self.root / check_name(name)).lock(timeout)

    def get(self, name: str) -> Run:
        """The run called `name` inside this store. Paths are refused: a folder elsewhere is not a run."""
        check_name(name)
        path = self.root / name
        if path.is_symlink() and self.root.resolve() != path.resolve().parent:
            raise RunError(f"{path} points outside the runs folder {self.root}; refusing to use it as a run")
        if not path.is_dir() or not ((path / "config.json").is_file() or (path / "status.json").is_file()):
            known = ", ".join(r.name for r in self.list()[:10]) or "none"
            raise RunError(f"no run {name!r} in {self.root} (known: {known})")
        return Run(path)

    def list(self) -> list[Run]:
        if not self.root.is_dir():
            return []
        runs = [Run(p) for p in self.root.iterdir() if not p.name.startswith(".") and p.is_dir()
                and ((p / "config.json").is_file() or (p / "status.json").is_file())]
        return sorted(runs, key=lambda r: r.raw_status().get("created", 0), reverse=True)

    def delete(self, name: str) -> None:
        run = self.get(name)
        root = self.root.resolve()
        target = run.path.resolve()
        if root not in target.parents:
            raise RunError(f"refusing to delete {target}: it is outside the runs folder {root}")
        lock = run.lock(timeout=0)
        try:
            if run.status()["state"] == "running":
                raise RunError(f"run {name!r} is still running; stop it first")
            shutil.rmtree(target)
        finally:
            lock.release()


    # ---------------------------------------------------------------- sweeps (uegr/sweep/)
    def sweep_dir(self, study: str = "") -> Path:
        """runs/sweeps/ holds the default Optuna storage (optuna.db); runs/sweeps/<study>/ a study's
        progress.json and worker logs. Trials themselves are ordinary runs in runs/."""
        d = self.root / "sweeps" / study if study else self.root / "sweeps"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def external_analyses_dir(self, model_dir: Path) -> Path:
        """runs/_external/<folder>-<hash>/analyses/: results of analyses on a classifier folder that is not a run.
        They never go into that folder (it is the user's; it may be read-only or shared)."""
        import hashlib

        resolved = Path(model_dir).expanduser().resolve()
        tag = hashlib.sha256(str(resolved).encode()).hexdigest()[:10]
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in resolved.name)[:60] or "model"
        d = self.root / EXTERNAL / f"{stem}-{tag}" / "analyses"
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(d.parent / "source.txt", (str(resolved) + "\n").encode("utf-8"))
        return d

    def sweep_space_path(self, study: str) -> Path:
        """The search space the Sweep page saved for a study (runs/sweeps/<study>/space.yaml)."""
        return self.sweep_dir(check_name(study)) / "space.yaml"

# ---------------------------------------------------------------- background jobs (uegr/jobs.py)
JOBS = "_jobs"
EXTERNAL = "_external"


@dataclass
class JobFolder:
    """The files of one background job (layout in this module's docstring); uegr/jobs.py holds the logic."""

    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    spec_path = property(lambda self: self.path / "job.json")
    log_path = property(lambda self: self.path / "log.txt")
    progress_path = property(lambda self: self.path / "progress.json")
    stop_path = property(lambda self: self.path / "STOP")
    exit_path = property(lambda self: self.path / "exit.json")

    def read(self, path: Path) -> dict | None:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return raw if isinstance(raw, dict) else None

    def write(self, path: Path, data: dict) -> None:
        _atomic_write(path, json.dumps(data, indent=1, default=str))

    def locked(self, timeout: float = 30):
        """The job's lock: the launcher, the job and every app session's reaper write under it."""
        return _lock(self.path / ".job.lock", timeout)


def jobs_root(root: Path) -> Path:
    return Path(root) / JOBS


def new_job_folder(root: Path, kind: str) -> JobFolder:
    """A fresh job folder runs/_jobs/<time>-<kind>-<random>: ids sort by start time."""
    d = jobs_root(root)
    d.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", kind)[:30]
    path = d / f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}-{uuid.uuid4().hex[:6]}"
    path.mkdir()
    return JobFolder(path)


def job_folders(root: Path) -> list[JobFolder]:
    """Every job folder, newest first."""
    d = jobs_root(root)
    if not d.is_dir():
        return []
    return [JobFolder(p) for p in sorted(d.iterdir(), reverse=True) if p.is_dir() and not p.name.startswith(".")]


def job_folder(root: Path, job_id: str) -> JobFolder:
    if not NAME_RE.match(job_id or ""):
        raise RunError(f"job id {job_id!r} is not allowed: a job id is a name, not a path")
    return JobFolder(jobs_root(root) / job_id)


# ---------------------------------------------------------------- tags and notes (written by people, not jobs)
ANNOTATIONS = "annotations.json"  # runs/<name>/annotations.json: {"tags": [...], "notes": "..."}
TAG_RE = re.compile(r"^[\w.+-]{1,40}$")


def read_annotations(run: Run) -> dict:
    """A run's tags and notes ({"tags": [], "notes": ""} when none were written or the file is unreadable)."""
    try:
        raw = json.loads((run.path / ANNOTATIONS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raw = {}
    tags = raw.get("tags") if isinstance(raw, dict) else None
    notes = raw.get("notes") if isinstance(raw, dict) else None
    return {"tags": [str(t) for t in tags] if isinstance(tags, list) else [],
            "notes": notes if isinstance(notes, str) else ""}


def write_annotations(run: Run, tags: list[str], notes: str) -> dict:
    """Replace a run's tags and notes atomically. Tags: letters, digits, '_', '.', '+', '-' (1-40 chars)."""
    clean = []
    for t in tags:
        t = str(t).strip()
        if not t:
            continue
        if not TAG_RE.match(t):
            raise RunError(f"tag {t!r} is not allowed: use letters, digits, '_', '.', '+' or '-' (at most 40)")
        if t not in clean:
            clean.append(t)
    payload = {"tags": clean, "notes": str(notes), "updated": time.time()}
    _atomic_write(run.path / ANNOTATIONS, json.dumps(payload, indent=1))
    return {"tags": clean, "notes": str(notes)}
