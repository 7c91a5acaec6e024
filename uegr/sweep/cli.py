"""`uegr sweep`: create or join an Optuna study, run workers, print the best trials, promote one.

A worker is a plain command that writes its progress to a small JSON file (`--progress-file`, default
runs/sweeps/<study>/progress.json), so any job launcher can start it from an argument list.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .. import config as C
from ..runs import RunStore

EXAMPLES = """examples:
  uegr sweep --preset quick-demo --set method.name=uegr --space space.yaml --objective harmonic --trials 16 --study eps-k
  uegr sweep --preset tiny --study smoke --trials 3 --objective clean_acc --json
  uegr sweep --study eps-k --storage sqlite:////shared/optuna.db        # join: one more worker (any machine)
  uegr sweep --study eps-k --workers 2 --retry-failed                    # two workers on this machine
  uegr sweep --study eps-k --objective clean_acc,robust_acc ...          # two objectives: a Pareto front
  uegr sweep --study eps-k --json --trials 0                             # only print the best trial(s)
  uegr sweep --study eps-k --promote 7 --seeds 3                         # trial 7 at full budget, 3 seeds
space.yaml:  method.adv_eps: {low: 0.01, high: 0.2, log: true}
             method.k: {low: 1, high: 3}
             method.rate_rule: {choices: [uniform, schedule]}
"""


def add_sweep_parser(sub) -> None:
    from .space import DEFAULT_SPACES
    from .study import OBJECTIVES, PRUNERS, SAMPLERS

    s = sub.add_parser("sweep", help="hyperparameter search on Optuna; every trial is an ordinary run",
                       description="Search a space of config fields with Optuna. Default spaces: " + "; ".join(
                           f"{m}: {', '.join(sp)}" for m, sp in DEFAULT_SPACES.items()),
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--study", required=True, help="study name (letters, digits, - _ .)")
    s.add_argument("--storage", help="Optuna storage: an SQLAlchemy URL (sqlite:///x.db, postgresql://...), a .db "
                                     "file or a .log/.journal journal file (default: runs/sweeps/optuna.db)")
    s.add_argument("--preset", choices=list(C.PRESETS), help="base preset of every trial (new study)")
    s.add_argument("--config", help="base YAML/JSON config of every trial (new study)")
    s.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="base override (new study); with --promote: an extra override of the promoted runs")
    s.add_argument("--space", help="YAML search space: field: {low, high[, log, step]} or {choices: [...]} "
                                   "(default: the method's default space)")
    s.add_argument("--objective", default="harmonic",
                   help=f"comma-separated, from {', '.join(OBJECTIVES)}; several = multi-objective (Pareto front)")
    s.add_argument("--trials", type=int, help="finished trials the study should hold (default 16; joining: the "
                                              "study's own)")
    s.add_argument("--budget-steps", type=int, default=0, help="cap every trial at this many steps (0 = the config's)")
    s.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    s.add_argument("--pruner", default="auto", metavar="NAME[:OPTION=VALUE,...]",
                   help=f"one of {', '.join(PRUNERS)} (auto = median for one objective, none for several), with "
                        "optional Optuna options, e.g. halving:bootstrap_count=1 or median:n_warmup_steps=10")
    s.add_argument("--seed", type=int, help="sampler seed")
    s.add_argument("--enqueue-base", action="store_true",
                   help="new study: trial 0 runs the base config's own values of the space's fields (so the "
                        "best trial is never worse on the objective than the setting the search starts from)")
    s.add_argument("--workers", type=int, default=1, help="worker processes to start on this machine")
    s.add_argument("--retry-failed", type=int, nargs="?", const=2, default=None, metavar="N",
                   help="re-enqueue a trial whose worker died, at most N times (default 2)")
    s.add_argument("--heartbeat", type=int, default=30, help="seconds between trial heartbeats (RDB storages)")
    s.add_argument("--progress-file", help="progress JSON (default runs/sweeps/<study>/progress.json)")
    s.add_argument("--promote", type=int, metavar="TRIAL", help="re-run this trial at full budget")
    s.add_argument("--seeds", type=int, default=1, help="with --promote: seeds to run (optim.seed, +1, ...)")
    s.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)  # set by --workers
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.add_argument("--runs-dir", default=None, help="runs folder (default: $UEGR_HOME or ./runs)")
    s.add_argument("--json", action="store_true", help="print machine-readable JSON")
    s.set_defaults(func=cmd_sweep)


def _spec_from_args(args, store: RunStore):
    from .space import load_space
    from .study import make_spec

    if not (args.preset or args.config or args.set or args.space):
        return None  # join an existing study
    base = C.build_config(args.preset, args.config, args.set)
    space = load_space(args.space, base)
    objectives = [o.strip() for o in args.objective.split(",") if o.strip()]
    return make_spec(base, {"preset": args.preset, "config": args.config, "set": list(args.set)}, space,
                     objectives, args.trials if args.trials is not None else 16, args.budget_steps, args.sampler,
                     args.pruner, args.seed, args.enqueue_base)


def cmd_sweep(args) -> int:
    from dataclasses import asdict

    from .study import ATTR, SweepError, create_or_load, interrupt, resolve_storage, run_worker, study_summary

    store = RunStore(args.runs_dir)
    url = resolve_storage(args.storage, store)
    if args.promote is not None:
        return _promote(args, store, url)
    spec = _spec_from_args(args, store)
    study, spec = create_or_load(args.study, url, spec, store, args.heartbeat, args.retry_failed,
                                 worker_index=args.worker_index)
    if args.trials is not None and args.trials > 0 and args.trials != spec.trials:
        spec.trials = args.trials  # a study's budget may grow or shrink when a worker joins
        study.set_user_attr(ATTR, asdict(spec))
    progress = Path(args.progress_file) if args.progress_file else store.sweep_dir(args.study) / "progress.json"
    if args.workers < 1:
        raise SweepError(f"--workers {args.workers}: at least 1")
    for sig in (signal.SIGTERM, signal.SIGINT):  # a stopped worker fails its trial, never leaves it running
        signal.signal(sig, interrupt)
    if args.trials == 0:
        code = 0  # only print where the study stands
    elif args.workers > 1:
        code = _spawn_workers(args, store, url, progress, spec.trials)
    else:
        run_worker(study, spec, store, url, progress, args.retry_failed, quiet=args.quiet or args.json)
        code = 0
    summary = study_summary(study, spec, url, "done")
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
    else:
        print(f"study {args.study}: {summary['trials_done']}/{spec.trials} trials done ({summary['pruned']} pruned, "
              f"{summary['failed']} failed) in {url}")
        for b in summary["best"]:
            vals = ", ".join(f"{k} {v:.4f}" for k, v in b["values"].items())
            print(f"  best trial {b['trial']} (run {b['run']}): {vals}\n    {b['command']}")
        bp = summary.get("best_pruned")
        if bp:
            print(f"  no trial ran to the end: the pruner stopped all {summary['pruned']}. The best pruned one is "
                  f"trial {bp['trial']} ({spec.objectives[0]} {bp['value']:.4f} at step {bp['step']}); run it in full "
                  f"with `uegr sweep --study {args.study} --promote {bp['trial']}`, or use a gentler --pruner")
    return code


def _spawn_workers(args, store: RunStore, url: str, progress: Path, trials: int) -> int:
    cmd = [sys.executable, "-m", "uegr.cli", "sweep", "--study", args.study, "--storage", url,
           "--runs-dir", str(store.root), "--heartbeat", str(args.heartbeat), "--progress-file", str(progress),
           "--trials", str(trials), "--quiet"]
    if args.retry_failed is not None:
        cmd += ["--retry-failed", str(args.retry_failed)]
    logs = store.sweep_dir(args.study)
    # Several torch processes on few cores: spin-waiting OpenMP threads slow each other ~4x (docs/benchmarks.md,
    # "Jobs side by side"); give each worker runtime.threads=1 on small machines.
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    procs = []
    for i in range(args.workers):
        log = (logs / f"worker-{i}.log").open("ab")
        procs.append(subprocess.Popen(cmd + ["--worker-index", str(i + 1)], stdout=log, stderr=subprocess.STDOUT,
                                      env=env))
        log.close()
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            p.send_signal(signal.SIGINT)
        codes = [p.wait() for p in procs]
    bad = [c for c in codes if c not in (0, 130)]
    if bad:
        print(f"uegr sweep: {len(bad)} worker(s) failed; see {logs}/worker-*.log", file=sys.stderr)
    return 1 if bad else 0


def _promote(args, store: RunStore, url: str) -> int:
    from .study import SweepError, create_or_load, train_trial

    study, spec = create_or_load(args.study, url, None, store, args.heartbeat)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    t = trials.get(args.promote)
    if t is None or not t.params:
        raise SweepError(f"--promote {args.promote}: study {args.study!r} has no trial with that number and "
                         f"parameters (trials 0..{max(trials) if trials else -1})")
    if args.seeds < 1:
        raise SweepError(f"--seeds {args.seeds}: at least 1")
    seed0 = spec.trial_config(t.params, with_budget=False).optim.seed
    out = []
    for i in range(args.seeds):
        seed = seed0 + i
        extra = list(args.set) + [f"optim.seed={seed}"]
        name = f"{args.study}-t{t.number:04d}-full-s{seed}"
        if (store.root / name).exists():
            name = f"{name}-{int(time.time())}"
        run, values = train_trial(args.study, spec, store, t.params, None, name, extra, with_budget=False,
                                  tags={"trial": t.number, "promoted": True, "seed": seed},
                                  quiet=args.quiet or args.json)
        out.append({"run": run.name, "seed": seed, "values": {o: values[o] for o in spec.objectives},
                    "metrics": values, "command": spec.train_command(t.params, extra, with_budget=False)})
    if args.json:
        print(json.dumps({"study": args.study, "trial": t.number, "params": t.params, "runs": out}, indent=1,
                         default=str))
    else:
        for r in out:
            vals = ", ".join(f"{k} {v:.4f}" for k, v in r["values"].items())
            print(f"promoted trial {t.number} seed {r['seed']}: run {r['run']}: {vals}")
    return 0
