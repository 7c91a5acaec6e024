"""Dataset attacks as background jobs (uegr/jobs.py): the argument list and how the Attack lab reads one.

The `uegr attack` command writes its records and summary into the run's analyses (resumable: the same
command continues a stopped attack) and its progress through `uegr.jobs.report`. No Streamlit import.
"""

from __future__ import annotations

import json

from uegr import jobs
from uegr.runs import Run, RunStore


def attack_name(recipe: str, split: str) -> str:
    return f"attack-{recipe}-{split}"


def attack_argv(run: Run, store: RunStore, recipe: str, n: int, split: str = "test", query_budget: int | None = None,
                max_perturb: float | None = None, seed: int = 0, fresh: bool = False) -> list[str]:
    argv = ["attack", run.name, "--recipe", recipe, "-n", str(int(n)), "--split", split,
            "--runs-dir", str(store.root), "--seed", str(int(seed))]
    if query_budget is not None:
        argv += ["--query-budget", str(int(query_budget))]
    if max_perturb is not None:
        argv += ["--max-perturb", str(float(max_perturb))]
    return argv + (["--fresh"] if fresh else [])


def start_attack(run: Run, store: RunStore, recipe: str, n: int, split: str = "test", **kw) -> jobs.Job:
    """Start `uegr attack` on a run as a job; refused while the same attack is still running."""
    for job in jobs.active(store, "attack", run=run.name, recipe=recipe, split=split):
        raise RuntimeError(f"an attack {recipe} on {split} of {run.name!r} is already running (job {job.id})")
    return jobs.start(attack_argv(run, store, recipe, n, split, **kw), store, "attack",
                      {"run": run.name, "recipe": recipe, "split": split, "n": int(n)})


def attack_status(run: Run, store: RunStore, recipe: str, split: str) -> dict | None:
    """The newest job of this attack: its info() plus done/total, the summary it saved, log_tail; None if none."""
    job = jobs.latest(store, "attack", run=run.name, recipe=recipe, split=split)
    if job is None:
        return None
    info = job.info()
    summary = None
    path = run.analyses_dir / f"{attack_name(recipe, split)}.json"
    if path.is_file() and path.stat().st_mtime >= (info["started"] or 0) - 1:
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            summary = None
    done, total = int(info["step"] or 0), int(info["total"] or info.get("n") or 0)
    if info["state"] == "completed" and summary:
        done = total = summary.get("num_examples", done)
    return {**info, "job": job, "done": done, "total": total, "summary": summary, "log_tail": job.log_tail()}
