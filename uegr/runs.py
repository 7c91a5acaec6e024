"""The run store: one folder per run. This is the only module that knows the folder layout.

    runs/<name>/
      config.json          the full Config
      status.json          state, pid, host, heartbeat, step, error (atomic replace)
      metrics.jsonl        append-only records: {"kind": "train"|"eval"|..., "step": ..., ...}
      log.txt              stdout/stderr of the training process (when launched by the app)
      STOP                 present = stop requested
      checkpoints/last/    model.safetensors + tokenizer + labels + trainer_state.pt
      checkpoints/best/    best validation score
      saliency/            step_XXXXXXX.json (per-tensor summaries) + .safetensors (downsampled maps)
      analyses/            attack/landscape results (one JSON per analysis) and their job folders
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from .config import Config

STATES = ("queued", "running", "completed", "failed", "stopped", "interrupted")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class RunError(ValueError):
    pass


def default_root() -> Path:
    return Path(os.environ.get("UEGR_HOME", "runs")).expanduser()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


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
    """Incremental reader of an append-only JSONL file: each call returns only new, complete lines."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0
        self.records: list[dict] = []

    def poll(self) -> list[dict]:
        try:
            with self.path.open("rb") as fh:
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


@dataclass
class Run:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    # ---------------------------------------------------------------- config
    def config(self) -> Config:
        return Config.from_dict(json.loads((self.path / "config.json").read_text(encoding="utf-8")))

    def write_config(self, cfg: Config) -> None:
        _atomic_write(self.path / "config.json", cfg.to_json())

    # ---------------------------------------------------------------- status
    def raw_status(self) -> dict:
        try:
            return json.loads((self.path / "status.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {"state": "queued"}

    def status(self) -> dict:
        """The status record; a 'running' run whose process is gone is reported as interrupted."""
        st = self.raw_status()
        if st.get("state") == "running":
            same_host = st.get("host") == socket.gethostname()
            dead = (not pid_alive(st.get("pid"))) if same_host else time.time() - st.get("heartbeat", 0) > 300
            if dead:
                st["state"] = "interrupted"
                st["error"] = st.get("error") or ("the training process ended without writing a final status "
                                                  "(killed, crashed or the machine restarted); resume with --resume")
        return st

    def set_status(self, **fields) -> dict:
        st = self.raw_status()
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

    # ---------------------------------------------------------------- control
    def request_stop(self) -> None:
        (self.path / "STOP").write_text(str(time.time()))

    def stop_requested(self) -> bool:
        return (self.path / "STOP").exists()

    def clear_stop(self) -> None:
        (self.path / "STOP").unlink(missing_ok=True)

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
    def checkpoint_dir(self, which: str = "last") -> Path:
        return self.path / "checkpoints" / which

    def has_checkpoint(self, which: str = "last") -> bool:
        return (self.checkpoint_dir(which) / "config.json").is_file()

    def best_checkpoint(self) -> Path:
        for which in ("best", "last"):
            if self.has_checkpoint(which):
                return self.checkpoint_dir(which)
        raise RunError(f"run {self.name!r} has no checkpoint yet")

    # ---------------------------------------------------------------- saliency snapshots
    @property
    def saliency_dir(self) -> Path:
        return self.path / "saliency"

    def write_snapshot(self, step: int, rows: list[dict], maps: dict) -> None:
        from safetensors.torch import save_file

        self.saliency_dir.mkdir(exist_ok=True)
        stem = self.saliency_dir / f"step_{step:07d}"
        if maps:
            save_file({k: v.contiguous() for k, v in maps.items()}, str(stem) + ".safetensors")
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
        path = self.analyses_dir / f"{name}.json"
        _atomic_write(path, json.dumps(payload, indent=1))
        return path

    def analyses(self, prefix: str = "") -> dict[str, dict]:
        out = {}
        for p in sorted(self.analyses_dir.glob(f"{prefix}*.json")):
            try:
                out[p.stem] = json.loads(p.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                continue
        return out

    # ---------------------------------------------------------------- summary
    def summary(self) -> dict:
        st = self.status()
        try:
            cfg = self.config()
            method, data, model = cfg.method.name, cfg.data.source, cfg.model.name
        except (FileNotFoundError, json.JSONDecodeError, ValueError):
            method = data = model = "?"
        started, ended = st.get("started"), st.get("ended") or (time.time() if st.get("state") == "running" else None)
        return {"name": self.name, "method": method, "data": data, "model": model, "state": st.get("state"),
                "step": st.get("step", 0), "total_steps": st.get("total_steps"),
                "best_score": st.get("best_score"), "best_metric": st.get("best_metric"),
                "duration_s": round(ended - started, 1) if started and ended else None,
                "created": st.get("created"), "error": st.get("error")}


class RunStore:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else default_root()

    def create(self, cfg: Config, name: str | None = None) -> Run:
        self.root.mkdir(parents=True, exist_ok=True)
        if name:
            if not NAME_RE.match(name):
                raise RunError(f"run name {name!r} is not allowed: use letters, digits, '-', '_' or '.' "
                               "(at most 100 characters)")
        else:
            name = f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.method.name}"
            base, i = name, 1
            while (self.root / name).exists():
                i += 1
                name = f"{base}-{i}"
        path = self.root / name
        try:
            path.mkdir()  # atomic: two launchers cannot both create the same run
        except FileExistsError:
            raise RunError(f"a run named {name!r} already exists in {self.root}; choose another name "
                           "or use --resume") from None
        run = Run(path)
        run.write_config(cfg)
        run.set_status(state="queued", created=time.time())
        return run

    def get(self, name: str) -> Run:
        path = Path(name)
        if not (path / "config.json").is_file():
            path = self.root / name
        if not (path / "config.json").is_file():
            known = ", ".join(r.name for r in self.list()[:10]) or "none"
            raise RunError(f"no run {name!r} in {self.root} (known: {known})")
        return Run(path)

    def list(self) -> list[Run]:
        if not self.root.is_dir():
            return []
        runs = [Run(p) for p in self.root.iterdir() if (p / "config.json").is_file()]
        return sorted(runs, key=lambda r: r.raw_status().get("created", 0), reverse=True)

    def delete(self, name: str) -> None:
        run = self.get(name)
        if run.raw_status().get("state") == "running" and run.status()["state"] == "running":
            raise RunError(f"run {name!r} is still running; stop it first")
        root = self.root.resolve()
        target = run.path.resolve()
        if root not in target.parents:
            raise RunError(f"refusing to delete {target}: it is outside the runs folder {root}")
        shutil.rmtree(target)

    # ---------------------------------------------------------------- sweeps (uegr/sweep/)
    def sweep_dir(self, study: str = "") -> Path:
        """runs/sweeps/ holds the default Optuna storage (optuna.db); runs/sweeps/<study>/ a study's
        progress.json and worker logs. Trials themselves are ordinary runs in runs/."""
        d = self.root / "sweeps" / study if study else self.root / "sweeps"
        d.mkdir(parents=True, exist_ok=True)
        return d
