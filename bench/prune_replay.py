"""Replay Optuna pruners on the learning curves of a finished, unpruned study: which pruner would have saved
how many training steps, and would it have kept the best trial?

    UEGR_HOME=runs python bench/prune_replay.py --study NAME [--storage URL] [--eval-every 10] [--json]

Each trial's validation accuracies (its run's metrics.jsonl) are fed, in trial order, to a fresh in-memory
study with the pruner, exactly as `uegr sweep` reports them (TrialReporter: one report per evaluation); a
trial is stopped at the first evaluation the pruner rejects. The trial order and parameters are the recorded
ones, so this isolates the pruner: in a live pruned study the sampler would also see the pruned trials and
propose differently, which is why a choice made here is confirmed by a real pruned study
(bench/sweep_bench.py --part pruning --pruner ...). Prints one row per pruner: total steps, steps ratio,
trials pruned, and the best objective kept vs the unpruned best.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def curves(study_name: str, storage: str, runs: Path) -> list[dict]:
    """[{trial, curve: {step: accuracy}, steps}] of the study's complete trials, in trial order."""
    import optuna
    from optuna.trial import TrialState

    from uegr.runs import RunStore

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=storage)
    store = RunStore(runs)
    out = []
    for t in sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number):
        run = store.get(t.user_attrs["run"])
        evals = [e for e in run.metrics("eval") if e.get("split", "validation") == "validation"]
        out.append({"trial": t.number, "curve": {int(e["step"]): float(e["accuracy"]) for e in evals},
                    "steps": int(run.status().get("step", 0)), "value": t.value})
    return out


def candidates(first: int, last: int) -> dict[str, object]:
    import optuna.pruners as P

    out = {"none": P.NopPruner()}
    for startup in (3, 5):
        for warm in (0, first, 2 * first):
            out[f"median startup={startup} warmup={warm}"] = P.MedianPruner(n_startup_trials=startup,
                                                                            n_warmup_steps=warm)
            for pct in (25.0, 33.0):
                out[f"percentile {pct:g} startup={startup} warmup={warm}"] = P.PercentilePruner(
                    pct, n_startup_trials=startup, n_warmup_steps=warm)
    for r in (first, 2 * first):
        for rf in (2, 3, 4):
            for boot in (0, 1, 2):
                out[f"halving min={r} rf={rf} bootstrap={boot}"] = P.SuccessiveHalvingPruner(
                    min_resource=r, reduction_factor=rf, bootstrap_count=boot)
    for r in (first, 2 * first):
        for rf in (2, 3):
            out[f"hyperband min={r} max={last} rf={rf}"] = P.HyperbandPruner(min_resource=r, max_resource=last,
                                                                             reduction_factor=rf)
    return out


def replay(trials: list[dict], pruner, eval_every: int) -> dict:
    import optuna
    from optuna.trial import TrialState

    study = optuna.create_study(direction="maximize", pruner=pruner, study_name="replay",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    total, pruned, best = 0, 0, None
    for tr in trials:
        steps = sorted(s for s in tr["curve"] if s % eval_every == 0 or s == tr["steps"])
        trial = study.ask()
        stopped_at = None
        for s in steps:
            trial.report(tr["curve"][s], s)
            if trial.should_prune():
                stopped_at = s
                break
        if stopped_at is not None:
            study.tell(trial, state=TrialState.PRUNED)
            total += stopped_at
            pruned += 1
        else:
            value = max(tr["curve"][s] for s in steps)  # the best checkpoint among these evaluations
            study.tell(trial, value)
            total += tr["steps"]
            best = value if best is None else max(best, value)
    return {"total_steps": total, "pruned": pruned, "best": best}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", required=True)
    ap.add_argument("--storage", default=None, help="default: sqlite in $UEGR_HOME/sweeps/optuna.db")
    ap.add_argument("--runs-dir", default=os.environ.get("UEGR_HOME", "runs"))
    ap.add_argument("--eval-every", type=int, default=0, help="use only evaluations at multiples of this step")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    runs = Path(args.runs_dir)
    storage = args.storage or f"sqlite:///{runs.resolve()}/sweeps/optuna.db"
    trials = curves(args.study, storage, runs)
    if not trials:
        raise SystemExit(f"study {args.study!r} has no complete trial in {storage}")
    every = args.eval_every or min(min(t["curve"]) for t in trials)
    last = max(t["steps"] for t in trials)
    rows = []
    for name, pruner in candidates(every, last).items():
        rows.append({"pruner": name, **replay(trials, pruner, every)})
    base = rows[0]
    for r in rows:
        r["steps_ratio"] = round(base["total_steps"] / max(1, r["total_steps"]), 2)
        r["best_difference"] = None if r["best"] is None else round(r["best"] - base["best"], 4)
    if args.json:
        print(json.dumps({"study": args.study, "trials": len(trials), "eval_every": every, "rows": rows}, indent=1))
        return
    print(f"study {args.study}: {len(trials)} trials, evaluations every {every} steps, {last} steps each")
    print(f"{'pruner':44} {'steps':>6} {'ratio':>6} {'pruned':>6} {'best':>7} {'diff':>7}")
    for r in rows:
        print(f"{r['pruner']:44} {r['total_steps']:6d} {r['steps_ratio']:6.2f} {r['pruned']:6d} "
              f"{r['best'] if r['best'] is not None else float('nan'):7.4f} {r['best_difference'] or 0:+7.4f}")


if __name__ == "__main__":
    main()
