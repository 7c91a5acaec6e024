"""Background analysis jobs launched from the app: detached `python -m uegr.cli attack ...` subprocesses.

One job per (run, recipe, split), kept in the folder the CLI writes its records to:

    runs/<run>/analyses/attack-<recipe>-<split>/
        job.json        pid, command, n, started (written here)
        log.txt         the CLI's stdout/stderr (tqdm progress included)
        STOPPED         present = the user pressed Stop
        records.jsonl   one line per attacked example (written by the CLI)
    runs/<run>/analyses/attack-<recipe>-<split>.json   the summary, written by the CLI at the end

The child has its own session (start_new_session=True): reloading the page or restarting the app neither
kills nor duplicates it. Stop sends SIGINT (the CLI keeps the finished records and exits with 130; the
same command resumes), then SIGTERM if it is still alive after a few seconds.

No Streamlit import here: tests and benchmarks use it too.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from app.jobs import child_env
from uegr.runs import Run, pid_alive

ROOT = Path(__file__).resolve().parents[1]
JOB = "job.json"
LOG = "log.txt"
STOPPED = "STOPPED"
_CHILDREN: list[subprocess.Popen] = []
_TQDM = re.compile(r"(\d+)/(\d+) \[")


def _reap() -> None:
    for p in list(_CHILDREN):
        if p.poll() is not None:
            _CHILDREN.remove(p)


def attack_name(recipe: str, split: str) -> str:
    return f"attack-{recipe}-{split}"


def job_dir(run: Run, recipe: str, split: str) -> Path:
    return run.analyses_dir / attack_name(recipe, split)


def launch_attack(run: Run, recipe: str, n: int, split: str = "test", query_budget: int | None = None,
                  max_perturb: float | None = None, seed: int = 0, runs_dir: str | Path | None = None,
                  fresh: bool = False) -> dict:
    """Start the attack CLI on a run in the background; returns the job record (also in job.json)."""
    _reap()
    cur = job_status(run, recipe, split)
    if cur and cur["state"] == "running":
        raise RuntimeError(f"an attack {recipe} on {split} of {run.name!r} is already running (pid {cur['pid']})")
    d = job_dir(run, recipe, split)
    d.mkdir(parents=True, exist_ok=True)
    (d / STOPPED).unlink(missing_ok=True)
    root = run.path.parent  # the run is named; its own runs folder finds it
    cmd = [sys.executable, "-m", "uegr.cli", "attack", run.name, "--recipe", recipe, "-n", str(int(n)),
           "--split", split, "--runs-dir", str(root), "--seed", str(int(seed))]
    if query_budget is not None:
        cmd += ["--query-budget", str(int(query_budget))]
    if max_perturb is not None:
        cmd += ["--max-perturb", str(float(max_perturb))]
    if fresh:
        cmd.append("--fresh")
    env = child_env()
    env["UEGR_HOME"] = str(root)
    log_path = d / LOG
    with log_path.open("ab") as log:
        log.write(f"\n$ {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    _CHILDREN.append(proc)
    job = {"pid": proc.pid, "run": run.name, "recipe": recipe, "split": split, "n": int(n), "cmd": cmd,
           "started": time.time(), "log": str(log_path), "log_offset": log_path.stat().st_size}
    (d / JOB).write_text(json.dumps(job, indent=1), encoding="utf-8")
    return job


def _read_job(d: Path) -> dict | None:
    try:
        return json.loads((d / JOB).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _log_since(job: dict, d: Path) -> str:
    try:
        with (d / LOG).open("rb") as fh:
            fh.seek(int(job.get("log_offset", 0)))
            return fh.read()[-200_000:].decode("utf-8", "replace")
    except OSError:
        return ""


def parse_progress(log_text: str) -> tuple[int, int] | None:
    """The last tqdm 'done/total [' in the log (carriage returns included), or None."""
    hits = _TQDM.findall(log_text)
    return (int(hits[-1][0]), int(hits[-1][1])) if hits else None


def _count_records(d: Path) -> int:
    try:
        with (d / "records.jsonl").open("rb") as fh:
            return sum(1 for line in fh if line.endswith(b"\n"))
    except OSError:
        return 0


def job_status(run: Run, recipe: str, split: str) -> dict | None:
    """The job's record plus state (running / completed / stopped / failed), done, total, log_tail and
    summary (the saved TextAttack-style summary when completed). None when no job was ever launched."""
    _reap()
    d = job_dir(run, recipe, split)
    job = _read_job(d)
    if job is None:
        return None
    log = _log_since(job, d)
    prog = parse_progress(log)
    done, total = prog if prog else (_count_records(d), job["n"])
    summary_path = run.analyses_dir / f"{attack_name(recipe, split)}.json"
    summary = None
    if summary_path.is_file() and summary_path.stat().st_mtime >= job["started"] - 1:
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            summary = None
    if pid_alive(job["pid"]):
        state = "running"
    elif summary is not None:
        state = "completed"
        done = total = summary.get("num_examples", done)
    elif (d / STOPPED).exists():
        state = "stopped"
    else:
        state = "failed"
    errors = [ln for ln in log.splitlines() if ln.startswith("error:")]
    tail = "\n".join(log.replace("\r", "\n").splitlines()[-15:])
    return {**job, "state": state, "done": done, "total": total, "summary": summary,
            "error": errors[-1][len("error:"):].strip() if errors else None, "log_tail": tail}


def stop_attack(run: Run, recipe: str, split: str, grace: float = 5.0) -> bool:
    """Interrupt a running job (SIGINT, then SIGTERM after `grace` seconds). False if none was running."""
    d = job_dir(run, recipe, split)
    job = _read_job(d)
    if not job or not pid_alive(job["pid"]):
        return False
    (d / STOPPED).write_text(str(time.time()))
    try:
        os.kill(job["pid"], signal.SIGINT)
    except ProcessLookupError:
        return True
    end = time.time() + grace
    while time.time() < end and pid_alive(job["pid"]):
        _reap()
        time.sleep(0.1)
    if pid_alive(job["pid"]):
        try:
            os.killpg(job["pid"], signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    _reap()
    return True


def jobs_for(run: Run) -> list[dict]:
    """Every attack job ever launched for this run (latest state of each)."""
    out = []
    for d in sorted(p for p in run.analyses_dir.glob("attack-*") if p.is_dir() and (p / JOB).is_file()):
        job = _read_job(d)
        if job:
            st = job_status(run, job["recipe"], job["split"])
            if st:
                out.append(st)
    return out


def wait(run: Run, recipe: str, split: str, timeout: float = 300.0, poll: float = 0.5) -> dict | None:
    end = time.time() + timeout
    st = job_status(run, recipe, split)
    while st and st["state"] == "running" and time.time() < end:
        time.sleep(poll)
        st = job_status(run, recipe, split)
    return st
