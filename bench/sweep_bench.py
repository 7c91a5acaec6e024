"""Sweep benchmarks, measured in one run: pruning (steps saved, best objective kept) and two workers on one
SQLite study (trials disjoint, wall time vs one worker).

    UEGR_DATA_DIR=../shared/data python bench/sweep_bench.py [--part pruning|workers|all] [--trials 16]

Size (fits 2 shared CPU cores): UEGR on a 2-layer random BERT (hidden 64) on real SST-2, 4,000 training
sentences, the full 872-sentence dev set, max_steps 120 (batch 32), an evaluation every 20 steps; the space
below; objective clean_acc (dev accuracy of the best checkpoint). Same TPE sampler seed for both studies.
Each study runs with `uegr sweep` in its own process, one thread per worker.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPACE = """optim.lr: {low: 1.0e-4, high: 5.0e-3, log: true}
method.adv_eps: {low: 0.01, high: 0.2, log: true}
method.k: {low: 1, high: 2}
method.lambda_js: {low: 0.1, high: 3.0, log: true}
method.keep_ratio: {low: 0.1, high: 1.0}
"""
BASE = ["--preset", "tiny", "--set", "data.source=sst2", "--set", "data.max_train_examples=4000",
        "--set", "data.max_eval_examples=0", "--set", "data.max_length=48", "--set", "model.tiny_hidden_size=64",
        "--set", "optim.batch_size=32", "--set", "optim.max_steps=120", "--set", "runtime.eval_every=20",
        "--set", "runtime.threads=1", "--set", "runtime.snapshot_saliency=false", "--set", "method.refresh_every=10"]


def sweep(home: Path, study: str, trials: int, extra: list[str]) -> tuple[dict, float]:
    space = home / "space.yaml"
    space.write_text(SPACE)
    cmd = [sys.executable, "-m", "uegr.cli", "sweep", "--study", study, "--trials", str(trials), "--space", str(space),
           "--objective", "clean_acc", "--seed", "0", "--json", "--quiet", *BASE, *extra]
    env = dict(os.environ, UEGR_HOME=str(home), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout), wall


def trials_of(home: Path, study: str) -> list[dict]:
    import optuna

    s = optuna.load_study(study_name=study, storage=f"sqlite:///{home}/sweeps/optuna.db")
    rows = []
    for t in s.trials:
        run = t.user_attrs.get("run")
        st = json.loads((home / run / "status.json").read_text()) if run else {}
        rows.append({"trial": t.number, "state": t.state.name, "value": t.value, "steps": st.get("step", 0),
                     "pid": t.user_attrs.get("pid"), "run": run})
    return rows


def pruning(trials: int) -> dict:
    out = {}
    for label, pruner in (("unpruned", "none"), ("pruned", "halving")):
        home = Path(tempfile.mkdtemp(prefix=f"uegr-sweep-{label}-"))
        summary, wall = sweep(home, label, trials, ["--pruner", pruner])
        rows = trials_of(home, label)
        out[label] = {"pruner": pruner, "wall_s": round(wall, 1), "best": summary["best"][0]["values"]["clean_acc"],
                      "total_steps": sum(r["steps"] for r in rows), "pruned": summary["pruned"],
                      "complete": summary["complete"], "trials": rows}
        print(json.dumps({k: v for k, v in out[label].items() if k != "trials"}), flush=True)
    out["steps_ratio"] = round(out["unpruned"]["total_steps"] / max(1, out["pruned"]["total_steps"]), 2)
    out["best_difference"] = round(out["pruned"]["best"] - out["unpruned"]["best"], 4)
    return out


def workers(trials: int) -> dict:
    out = {}
    for n in (1, 2):
        home = Path(tempfile.mkdtemp(prefix=f"uegr-sweep-w{n}-"))
        summary, wall = sweep(home, f"w{n}", trials, ["--pruner", "none", "--workers", str(n)])
        rows = trials_of(home, f"w{n}")
        runs = [r["run"] for r in rows]
        out[f"workers_{n}"] = {"wall_s": round(wall, 1), "trials": len(rows), "pids": len({r["pid"] for r in rows}),
                               "disjoint": len(set(runs)) == len(runs), "best": summary["best"][0]["values"]}
        print(json.dumps(out[f"workers_{n}"]), flush=True)
    out["speedup"] = round(out["workers_1"]["wall_s"] / out["workers_2"]["wall_s"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["pruning", "workers", "all"], default="all")
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--worker-trials", type=int, default=8)
    args = ap.parse_args()
    res = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_start": os.getloadavg()}
    if args.part in ("pruning", "all"):
        res["pruning"] = pruning(args.trials)
    if args.part in ("workers", "all"):
        res["workers"] = workers(args.worker_trials)
    res["load_avg_end"] = os.getloadavg()
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
