"""Background jobs: one model for every `uegr ...` command run in the background (training, dataset
attacks, landscape probes, sweeps).

How a job lives (its files: `uegr.runs.JobFolder`, the only place that knows their names):

- **start**: `start(argv, store, kind, labels)` runs `python -m uegr.cli *argv` detached (its own session,
  so reloading the page or restarting the app neither kills nor duplicates it) with UEGR_JOB_DIR naming
  its folder; job.json records argv, labels, pid (+ the pid's start tick, so a reused pid is not mistaken
  for it) and the start time. All state is on disk: every app session lists the same jobs.
- **progress**: the command calls `report(step, total, message)`; progress.json gets step, total, ETA.
- **stop**: `Job.request_stop()` writes STOP; the command polls `stop_requested()` and ends cleanly
  (saving what it has). `force=True` (or a second Stop after STOP_GRACE_S) sends SIGTERM to its group.
- **exit / reap**: `uegr.cli.main` calls `finish(code)` on the way out, writing exit.json (completed,
  stopped, failed, interrupted). A process that died without it (kill -9, OOM) is found by `Job.status()`,
  which writes exit.json = interrupted under the job's lock: never "running" forever.

Training jobs also keep the run's own status (uegr/runs.py); `start_run`, `stop_run`, `resume_run` and
`run_state` below are the training-specific helpers. No Streamlit import: tests and benchmarks use it too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .config import Config
from .runs import JobFolder, Run, RunError, RunStore, job_folder, job_folders, new_job_folder, pid_alive

ROOT = Path(__file__).resolve().parents[1]
ENV_DIR = "UEGR_JOB_DIR"
ENV_OWNER = "UEGR_JOB_OWNER"  # pid of the job's main process; its subprocesses (sweep workers) inherit it
ACTIVE = ("starting", "running", "stopping")
STOP_GRACE_S = 30.0
_CHILDREN: list[subprocess.Popen] = []  # polled by reap() so finished children do not linger as zombies


def child_env() -> dict:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    # Jobs often run side by side (training, a probe, an attack). OpenMP's default spin-waiting then
    # makes two 2-thread jobs on 2 cores each 7x slower instead of 2x; sleeping waits cost ~5 % alone
    # and keep that to 2.6x (docs/benchmarks.md, "Jobs side by side").
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    pp = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + pp if pp else "")
    for k in (ENV_DIR, ENV_OWNER):  # a job started from inside a job is its own job
        env.pop(k, None)
    return env


def _proc_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def reap() -> None:
    for p in list(_CHILDREN):
        if p.poll() is not None:
            _CHILDREN.remove(p)


# ------------------------------------------------------------------------------------------ the launcher side
class Job:
    def __init__(self, folder: JobFolder):
        self.folder = folder

    @property
    def id(self) -> str:
        return self.folder.id

    @property
    def spec(self) -> dict:
        return self.folder.read(self.folder.spec_path) or {}

    @property
    def labels(self) -> dict:
        return self.spec.get("labels") or {}

    @property
    def log_path(self) -> Path:
        log = self.spec.get("log")  # a training job logs into its run folder (runs/<run>/log.txt)
        return Path(log) if log else self.folder.log_path

    def progress(self) -> dict:
        return self.folder.read(self.folder.progress_path) or {}

    def _alive(self, spec: dict) -> bool:
        pid = spec.get("pid")
        if spec.get("host") not in (None, socket.gethostname()):
            return True  # another machine's job: only its exit.json can end it here
        if not pid_alive(pid):
            return False
        return spec.get("pid_start") is None or _proc_start(pid) in (None, spec["pid_start"])

    def status(self) -> dict:
        """{"state", "code", "error", "ended"}: the exit record, or running / stopping / starting while the
        process lives. The one reaper: a dead process without an exit record is recorded as interrupted."""
        ex = self.folder.read(self.folder.exit_path)
        if ex:
            return ex
        spec = self.spec
        if not spec.get("pid"):
            if time.time() - spec.get("started", 0) < 60:
                return {"state": "starting"}
        elif self._alive(spec):
            return {"state": "stopping" if self.stop_requested() else "running"}
        reap()
        with self.folder.locked():
            ex = self.folder.read(self.folder.exit_path)  # the job may have written it meanwhile
            if not ex:
                stopped = self.stop_requested()
                ex = {"state": "stopped" if stopped else "interrupted", "code": None, "ended": time.time(),
                      "reaped": True,
                      "error": None if stopped else "the process ended without writing its exit state (killed, "
                                                    "out of memory or the machine restarted)"}
                self.folder.write(self.folder.exit_path, ex)
        return ex

    def stop_requested(self) -> bool:
        return self.folder.stop_path.exists()

    def request_stop(self, force: bool = False) -> bool:
        """Ask the job to stop (it saves what it has). force, or a second request STOP_GRACE_S after the first:
        SIGTERM to its process group. False when it was not running."""
        st = self.status()["state"]
        if st not in ACTIVE:
            return False
        try:
            first = self.folder.stop_path.stat().st_mtime
        except FileNotFoundError:
            first = None
            self.folder.write(self.folder.stop_path, {"requested": time.time()})
        spec = self.spec
        if (force or (first is not None and time.time() - first > STOP_GRACE_S)) and self._alive(spec):
            try:
                os.killpg(spec["pid"], signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        return True

    def error(self) -> str | None:
        st = self.status()
        if st.get("error"):
            return st["error"]
        if st.get("state") != "failed":
            return None
        lines = [ln for ln in self.log_tail(200).splitlines() if "error:" in ln or ln.startswith(("Error", "Traceback"))]
        return lines[-1].split("error:", 1)[-1].strip() if lines else "see the log"

    def log_tail(self, lines: int = 15) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(max(0, fh.seek(0, 2) - 40_000))
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join([ln for ln in text.replace("\r", "\n").splitlines() if ln.strip()][-lines:])

    def info(self) -> dict:
        """One row for listings: id, kind, labels, state, step/total, fraction, ETA, message, times."""
        spec, st, prog = self.spec, self.status(), self.progress()
        total = prog.get("total")
        frac = min(1.0, prog.get("step", 0) / total) if total else None
        if st["state"] == "completed":
            frac = 1.0
        return {"id": self.id, "kind": spec.get("kind"), **(spec.get("labels") or {}), "state": st["state"],
                "step": prog.get("step"), "total": total, "fraction": frac, "eta_s": prog.get("eta_s"),
                "message": prog.get("message", ""), "started": spec.get("started"), "ended": st.get("ended"),
                "pid": spec.get("pid"), "code": st.get("code"), "error": self.error() if st["state"] in
                ("failed", "interrupted") else None, "command": "uegr " + " ".join(spec.get("argv") or [])}

    def wait(self, timeout: float = 300.0, poll: float = 0.3) -> dict:
        end = time.time() + timeout
        while time.time() < end and self.status()["state"] in ACTIVE:
            reap()
            time.sleep(poll)
        return self.status()


def start(argv: list[str], store: RunStore, kind: str, labels: dict | None = None,
          env: dict | None = None, log: Path | None = None) -> Job:
    """Run `python -m uegr.cli *argv` in the background as a job of `store`; returns it at once.
    log: append the output there instead of the job folder's log.txt."""
    reap()
    folder = new_job_folder(store.root, kind)
    argv = [str(a) for a in argv]
    spec = {"id": folder.id, "kind": kind, "argv": argv, "labels": dict(labels or {}), "started": time.time(),
            "host": socket.gethostname(), **({"log": str(log)} if log else {})}
    folder.write(folder.spec_path, spec)
    e = child_env()
    e.update(env or {})
    e["UEGR_HOME"] = str(store.root)
    e[ENV_DIR] = str(folder.path.resolve())
    cmd = [sys.executable, "-m", "uegr.cli", *argv]
    with folder.locked(), Path(log or folder.log_path).open("ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, cwd=str(ROOT), env=e, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        _CHILDREN.append(proc)
        spec.update(pid=proc.pid, pid_start=_proc_start(proc.pid))
        folder.write(folder.spec_path, spec)
    return Job(folder)


def get(store: RunStore, job_id: str) -> Job:
    folder = job_folder(store.root, job_id)
    if not folder.spec_path.is_file():
        raise RunError(f"no job {job_id!r} in {store.root}")
    return Job(folder)


def list_jobs(store: RunStore, kind: str | None = None, **labels) -> list[Job]:
    """Jobs of this runs folder, newest first, filtered by kind and label values."""
    out = []
    for f in job_folders(store.root):
        job = Job(f)
        spec = job.spec
        if not spec or (kind and spec.get("kind") != kind):
            continue
        if all((spec.get("labels") or {}).get(k) == v for k, v in labels.items()):
            out.append(job)
    return out


def latest(store: RunStore, kind: str | None = None, **labels) -> Job | None:
    found = list_jobs(store, kind, **labels)
    return found[0] if found else None


def active(store: RunStore, kind: str | None = None, **labels) -> list[Job]:
    return [j for j in list_jobs(store, kind, **labels) if j.status()["state"] in ACTIVE]


# ------------------------------------------------------------------------------------------ the job side
_folder: JobFolder | None = None
_first: tuple[float, float] | None = None  # (time, step) of the first report: the ETA's rate
_last_write = 0.0
_stopped = False  # the command stopped on a request the job did not see (e.g. `uegr stop RUN`)


def current() -> JobFolder | None:
    """This process's job folder (UEGR_JOB_DIR), or None when it was not started as a job."""
    global _folder
    d = os.environ.get(ENV_DIR)
    if not d:
        return None
    if _folder is None or str(_folder.path) != d:
        _folder = JobFolder(Path(d))
    return _folder


def claim() -> None:
    """Called once by the CLI: this process is the job's main process (subprocesses it starts are not)."""
    if current() is not None and not os.environ.get(ENV_OWNER):
        os.environ[ENV_OWNER] = str(os.getpid())


def _owner() -> bool:
    return os.environ.get(ENV_OWNER) == str(os.getpid())


def report(step: float, total: float | None = None, message: str = "", eta_s: float | None = None,
           every: float = 0.5) -> None:
    """Write progress.json (step, total, ETA, message), at most every `every` seconds and always at the end.
    A no-op outside a job. The ETA, when not given, comes from the rate since the first report."""
    global _first, _last_write
    folder = current()
    if folder is None:
        return
    now = time.time()
    if _first is None or step < _first[1]:
        _first = (now, step)
    done = total is not None and step >= total
    if now - _last_write < every and not done:
        return
    if eta_s is None and total and step > _first[1]:
        eta_s = (now - _first[0]) / (step - _first[1]) * max(0.0, total - step)
    _last_write = now
    data = {"step": step, "total": total, "eta_s": None if eta_s is None else round(eta_s, 1),
            "message": message, "updated": now}
    try:
        folder.write(folder.progress_path, data)
    except OSError:
        pass  # progress is advisory: a full disk must not kill the job


def stopped() -> None:
    """The command ended early on request (exit 0): record the job as stopped, not completed."""
    global _stopped
    _stopped = True


def stop_requested() -> bool:
    """Whether this process's job was asked to stop (False outside a job). Cheap: one stat."""
    folder = current()
    return folder is not None and folder.stop_path.exists()


def finish(code: int) -> None:
    """Record the exit state of this process's job (only its main process does)."""
    folder = current()
    if folder is None or not _owner():
        return
    stopped = _stopped or folder.stop_path.exists()
    if code == 0:
        state = "stopped" if stopped else "completed"
    elif code == 130:
        state = "stopped" if stopped else "interrupted"
    else:
        state = "failed"
    try:
        with folder.locked():
            folder.write(folder.exit_path, {"state": state, "code": code, "ended": time.time()})
    except (OSError, TimeoutError):
        pass  # the reaper records it as interrupted


# ------------------------------------------------------------------------------------------ training jobs
def run_job(run: Run) -> Job | None:
    """The newest training job of this run."""
    return latest(RunStore(run.store_root), "train", run=run.name)


def launch_run(run: Run, store: RunStore, resume: bool = False) -> Job:
    """Start `uegr train` for an existing (queued) run folder as a job."""
    argv = ["train", "--name", run.name, "--runs-dir", str(store.root), "--quiet"]
    argv += ["--resume"] if resume else ["--config", str(run.path / "config.json")]
    # The child honours a Stop clicked after this moment, even while it starts.
    job = start(argv, store, "train", {"run": run.name}, env={"UEGR_LAUNCHED": repr(time.time())},
                log=run.log_path)
    run.set_status(launcher_pid=job.spec.get("pid"), launched=time.time(), job=job.id)
    return job


def start_run(cfg: Config, store: RunStore, name: str | None = None) -> Run:
    """Create the queued run folder, then start its training job."""
    run = store.create(cfg, name or None)
    launch_run(run, store)
    return run


def run_state(run: Run) -> dict:
    """Run.status() plus one case: a queued run whose training job already ended is failed."""
    st = run.status()
    if st.get("state") == "queued" and st.get("launcher_pid"):
        job = run_job(run)
        dead = job.status()["state"] not in ACTIVE if job else not pid_alive(st["launcher_pid"])
        if dead:
            st = run.status()  # the child may have just written its final status: re-read once
            if st.get("state") == "queued":
                st["state"] = "failed"
                st["error"] = st.get("error") or "the training process exited before it started; see the log"
    return st


def stop_run(run: Run) -> str:
    """Stop a run: its STOP (honoured also while queued, and by `uegr stop`) and its job's stop request."""
    state = run.request_stop()
    job = run_job(run)
    if job is not None:
        job.request_stop()
    return state


def resume_run(run: Run, store: RunStore) -> Job:
    """Start the run again with --resume: from the last checkpoint, or from step 0 when there is none."""
    st = run_state(run)
    if run.is_locked() or (st.get("state") in ("queued", "running") and pid_alive(st.get("pid") or
                                                                                 st.get("launcher_pid"))):
        raise RunError(f"run {run.name!r} is still {st['state']}; stop it before resuming")
    run.clear_stop()
    return launch_run(run, store, resume=True)


def can_stop(state: str) -> bool:
    return state in ("queued", "running")


def can_resume(state: str) -> bool:
    return state in ("stopped", "interrupted", "failed", "damaged")


def wait_run(run: Run, timeout: float = 300.0, poll: float = 0.5) -> dict:
    """Block until the run leaves queued/running (tests, scripts)."""
    end = time.time() + timeout
    while time.time() < end:
        st = run_state(run)
        if st.get("state") not in ("queued", "running"):
            return st
        reap()
        time.sleep(poll)
    return run_state(run)
