"""Training jobs launched from the app: detached subprocesses of `python -m uegr.cli train`.

The app first creates the run folder (state queued, config saved) with `RunStore.create`, then starts
the CLI with `--name`, which trains into that queued run. The child gets its own session
(start_new_session=True), so a page reload, a second browser tab or an app restart neither kills nor
duplicates it; all state lives in the run folder. Stop = `Run.request_stop()` (the trainer checkpoints
and exits); Resume = the same launch with `--resume`.

No Streamlit import here: these functions are also used by tests and the benchmark.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from uegr.config import Config
from uegr.runs import Run, RunError, RunStore, pid_alive

ROOT = Path(__file__).resolve().parents[1]
ACTIVE = ("queued", "running")
_CHILDREN: list[subprocess.Popen] = []  # reaped lazily so finished children do not linger as zombies


def reap() -> None:
    for p in list(_CHILDREN):
        if p.poll() is not None:
            _CHILDREN.remove(p)


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
    return env


def launch(run: Run, store: RunStore, resume: bool = False) -> int:
    """Start the CLI for an existing run folder; returns the child's pid (also saved in status.json)."""
    reap()
    cmd = [sys.executable, "-m", "uegr.cli", "train", "--name", run.name, "--runs-dir", str(store.root), "--quiet"]
    if resume:
        cmd.append("--resume")
    else:
        cmd += ["--config", str(run.path / "config.json")]
    env = child_env()
    env["UEGR_HOME"] = str(store.root)
    env["UEGR_LAUNCHED"] = repr(time.time())  # the child honours a Stop clicked after this, even while it starts
    with run.log_path.open("ab") as log:
        log.write(f"\n$ {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    _CHILDREN.append(proc)
    run.set_status(launcher_pid=proc.pid, launched=time.time())
    return proc.pid


def start_run(cfg: Config, store: RunStore, name: str | None = None) -> Run:
    """Create the queued run folder, then launch its training process."""
    run = store.create(cfg, name or None)
    launch(run, store)
    return run


def effective_state(run: Run) -> dict:
    """Run.status() plus one app-side case: a queued run whose launched process already died is failed."""
    st = run.status()
    if st.get("state") == "queued" and st.get("launcher_pid") and not pid_alive(st["launcher_pid"]):
        st = run.status()  # the child may have just written its final status: re-read once
        if st.get("state") == "queued":
            st["state"] = "failed"
            st["error"] = st.get("error") or "the training process exited before it started; see the log below"
    return st


def stop(run: Run) -> str:
    """Ask the run to stop (a queued run then never trains); returns its state."""
    return run.request_stop()


def resume(run: Run, store: RunStore) -> int:
    """Relaunch with --resume: from the last checkpoint, or from step 0 when there is none yet."""
    st = effective_state(run)
    if run.is_locked() or (st.get("state") in ACTIVE and pid_alive(st.get("pid") or st.get("launcher_pid"))):
        raise RunError(f"run {run.name!r} is still {st['state']}; stop it before resuming")
    run.clear_stop()
    return launch(run, store, resume=True)


def can_stop(state: str) -> bool:
    return state in ACTIVE


def can_resume(state: str) -> bool:
    return state in ("stopped", "interrupted", "failed", "damaged")


def wait(run: Run, timeout: float = 300.0, poll: float = 0.5) -> dict:
    """Block until the run leaves queued/running (tests, scripts)."""
    end = time.time() + timeout
    while time.time() < end:
        st = effective_state(run)
        if st.get("state") not in ACTIVE:
            return st
        reap()
        time.sleep(poll)
    return effective_state(run)
