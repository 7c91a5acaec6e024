"""Sweep benchmarks, measured in one run: pruning (steps saved, best objective kept) and two workers on one
SQLite study (trials disjoint, wall time vs one worker).

    UEGR_DATA_DIR=../shared/data python bench/sweep_bench.py [--part pruning|workers|all] [--trials 16]

Pruning, sized to fit 2 shared CPU cores: UEGR (the quick-demo method: K=1 + clean pass, adv_eps 0.05) on
MiniLM, real SST-2, 800 training sentences, 200 dev sentences, 32 tokens, batch 16, max_steps 20, an evaluation
every 4 steps; the space below; objective clean_acc (dev accuracy of the best checkpoint); TPE with the same
seed in both studies; successive halving (min resource 4 steps, reduction factor 3) vs no pruning. The two
studies run side by side (one thread each): step counts and objectives, not wall times, are compared.
(A 2-layer random BERT stayed at the majority class within 120 steps on SST-2, so it cannot show pruning.)
Workers: 8 trials of the tiny preset (random 2-layer BERT, 40 steps) with 1 and then 2 worker processes.
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
BASE = ["--preset", "quick-demo", "--set", "data.source=sst2", "--set", "data.max_train_examples=800",
        "--set", "data.max_eval_examples=200", "--set", "data.max_length=32", "--set", "optim.batch_size=16",
        "--set", "optim.max_steps=20", "--set", "runtime.eval_every=4", "--set", "runtime.robust_eval_every=0",
        "--set", "runtime.threads=1", "--set", "runtime.snapshot_saliency=false"]
# The issue's own budget: the quick-demo preset unchanged (MiniLM, 1,600 built-in snippets, one epoch of batch 32,
# lr 2e-4) except an evaluation every 10 steps (so successive halving has rungs at 10 and 30) and no robust eval.
QUICK_DEMO = ["--preset", "quick-demo", "--set", "runtime.eval_every=10", "--set", "runtime.robust_eval_every=0",
              "--set", "runtime.threads=1", "--set", "runtime.snapshot_saliency=false"]
TINY = ["--preset", "tiny", "--set", "optim.max_steps=40", "--set", "runtime.eval_every=20",
        "--set", "runtime.threads=1", "--set", "runtime.snapshot_saliency=false"]


def start(home: Path, study: str, trials: int, base: list[str], extra: list[str]) -> subprocess.Popen:
    space = home / "space.yaml"
    space.write_text(SPACE if base is not TINY else "optim.lr: {low: 1.0e-4, high: 3.0e-3, log: true}\n")
    cmd = [sys.executable, "-m", "uegr.cli", "sweep", "--study", study, "--trials", str(trials), "--space", str(space),
           "--objective", "clean_acc", "--seed", "0", "--json", "--quiet", *base, *extra]
    env = dict(os.environ, UEGR_HOME=str(home), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=(home / "stderr.log").open("w"), text=True)
    proc.t0 = time.perf_counter()
    return proc


def finish(proc: subprocess.Popen) -> tuple[dict, float]:
    out, _ = proc.communicate()
    wall = time.perf_counter() - proc.t0
    if proc.returncode:
        raise SystemExit(f"sweep failed (exit {proc.returncode}); see its stderr.log")
    return json.loads(out), wall


def sweep(home: Path, study: str, trials: int, base: list[str], extra: list[str]) -> tuple[dict, float]:
    return finish(start(home, study, trials, base, extra))


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


def pruning(trials: int, base: list[str] = BASE, pruner: str = "halving", unpruned_home: Path | None = None,
            homes: Path | None = None) -> dict:
    """The unpruned and the pruned study side by side; with unpruned_home, the unpruned study is an existing
    one (study 'unpruned' or 'curves' there, same base and space) and only its first `trials` trials count."""
    out = {}
    procs = {}
    studies = [("pruned", pruner)] if unpruned_home else [("unpruned", "none"), ("pruned", pruner)]
    for label, prn in studies:
        if homes:
            home = homes / f"{label}-{prn.replace(':', '_').replace(',', '_').replace('=', '')}"
            home.mkdir(parents=True, exist_ok=False)
        else:
            home = Path(tempfile.mkdtemp(prefix=f"uegr-sweep-{label}-"))
        procs[label] = (home, prn, start(home, label, trials, base, ["--pruner", prn]))
    if unpruned_home:
        name = "curves" if (unpruned_home / "curves-t0000").exists() else "unpruned"
        rows = [r for r in trials_of(unpruned_home, name) if r["trial"] < trials]
        done = [r for r in rows if r["state"] == "COMPLETE"]
        out["unpruned"] = {"pruner": "none", "home": str(unpruned_home), "wall_s": None,
                           "best": max(r["value"] for r in done), "total_steps": sum(r["steps"] for r in rows),
                           "pruned": 0, "complete": len(done), "trials": rows}
        print(json.dumps({k: v for k, v in out["unpruned"].items() if k != "trials"}), flush=True)
    for label, (home, prn, proc) in procs.items():
        summary, wall = finish(proc)
        rows = trials_of(home, label)
        out[label] = {"pruner": prn, "home": str(home), "wall_s": round(wall, 1),
                      "best": summary["best"][0]["values"]["clean_acc"] if summary["best"] else None,
                      "best_pruned": summary.get("best_pruned"),
                      "total_steps": sum(r["steps"] for r in rows), "pruned": summary["pruned"],
                      "complete": summary["complete"], "trials": rows}
        print(json.dumps({k: v for k, v in out[label].items() if k != "trials"}), flush=True)
        print(json.dumps({label: out[label]["trials"]}), flush=True)
    out["steps_ratio"] = round(out["unpruned"]["total_steps"] / max(1, out["pruned"]["total_steps"]), 2)
    out["best_difference"] = (None if out["pruned"]["best"] is None  # every trial pruned: no result
                              else round(out["pruned"]["best"] - out["unpruned"]["best"], 4))
    return out


def workers(trials: int) -> dict:
    out = {}
    for n in (1, 2):
        home = Path(tempfile.mkdtemp(prefix=f"uegr-sweep-w{n}-"))
        summary, wall = sweep(home, f"w{n}", trials, TINY, ["--pruner", "none", "--workers", str(n)])
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
    ap.add_argument("--budget", choices=["small", "quick-demo"], default="small",
                    help="pruning budget: small (SST-2 800 sentences, 20 steps) or the quick-demo preset (~45 steps)")
    ap.add_argument("--pruner", default="halving", help="the pruned study's --pruner (NAME[:OPTION=VALUE,...])")
    ap.add_argument("--eval-every", type=int, default=0, help="quick-demo budget: evaluate every N steps (default 10)")
    ap.add_argument("--unpruned-home", type=Path, default=None,
                    help="reuse the unpruned study of an earlier run (its UEGR_HOME) instead of running it again")
    ap.add_argument("--homes", type=Path, default=None, help="keep each study's runs under this folder")
    args = ap.parse_args()
    res = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_start": os.getloadavg()}
    if args.part in ("pruning", "all"):
        base = list(QUICK_DEMO if args.budget == "quick-demo" else BASE)
        if args.eval_every:
            base[base.index("runtime.eval_every=10")] = f"runtime.eval_every={args.eval_every}"
        res["pruning"] = pruning(args.trials, base, args.pruner, args.unpruned_home, args.homes)
        res["pruning"]["budget"] = args.budget
        res["pruning"]["eval_every"] = args.eval_every or (10 if args.budget == "quick-demo" else 4)
    if args.part in ("workers", "all"):
        res["workers"] = workers(args.worker_trials)
    res["load_avg_end"] = os.getloadavg()
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
