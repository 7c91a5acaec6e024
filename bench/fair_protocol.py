"""Fair, robustness-aware reproduction at equal tuning effort (issue #18): a resumable driver.

    UEGR_DATA_DIR=../shared/data nice -n 10 python bench/fair_protocol.py --runs-dir runs/fair   # everything
    python bench/fair_protocol.py --runs-dir runs/fair --plan                # print the plan, run nothing
    python bench/fair_protocol.py --runs-dir runs/fair --report-only         # docs/results.md from results
    UEGR_DATA_DIR=../shared/data python bench/fair_protocol.py --tiny --runs-dir /tmp/fair-tiny  # dry run

Stages (per task; SST-2 first, then TREC at reduced size, which is the issue's stage e):
  a  sweep:   one `uegr sweep` study per method, all with the same trials, sampler (TPE), sampler seed and
              per-trial step budget; objective `harmonic` of clean dev accuracy and DeepWordBug accuracy on
              a fixed dev subset (runtime.robust_eval_*, select_on=harmonic). Never the test set.
  b  confirm: each method's best trial at full budget with 3 seeds (`uegr train`, named <method>-s<seed>; seed 0
              is a copy of the best trial's own run when the trials already train the full budget).
  c  attack:  the same test sentences attacked with DeepWordBug, TextFooler-lite and PWWS
              (bench/reproduce.py's evaluate_and_attack; paired analysis by its paired_rows).
  d  ablate:  UEGR's four ablations at UEGR's chosen setting, trained and attacked the same way.
  f  gpu:     (only with --gpu) full SST-2 (67k), 3 epochs, for UEGR, vanilla and the best baseline.
  g  report:  the "Fair re-run (issue #18)" section of docs/results.md, regenerated from finished results.

Every step is one command recorded (with its exit code and times) in <runs-dir>/steps/<step>.json; a step
with exit code 0 there is skipped on a rerun, so the driver resumes after any interruption (the sweeps and
attacks themselves also resume inside a step). Steps of one stage run --jobs at a time (one thread each).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

METHODS = ["vanilla", "rdrop", "freelb", "childtuning", "roast", "uegr"]
ABLATIONS = ["uegr-no-adv", "uegr-no-js", "uegr-fixed-dropout", "uegr-no-selective"]
RECIPES = "deepwordbug,textfooler-lite,pwws"
SPACES = REPO / "bench" / "fair_spaces"
START, END = "<!-- fair-rerun:start -->", "<!-- fair-rerun:end -->"

# Sizes (docs/results.md, "Fair re-run": measured costs and the estimate that chose them). eval_every is the
# epoch's step count (157 = ceil(5000/32); TREC 154 = ceil(4907/32)): one clean + one robust evaluation per
# run, at its end; a mid-epoch robust evaluation of 128 sentences would cost about as much as the training.
FULL = {
    "sst2": dict(model="minilm", train_examples=5000, epochs=1, trials=4, budget_steps=0, eval_every=157,
                 robust_examples=128, robust_budget=100, seeds=3, ablation_seeds=1, attack_examples=500,
                 ablation_attack_examples=200, methods=METHODS, ablations=ABLATIONS),
    "trec": dict(model="minilm", train_examples=0, epochs=1, trials=2, budget_steps=0, eval_every=154,
                 robust_examples=128, robust_budget=100, seeds=2, ablation_seeds=0, attack_examples=150,
                 ablation_attack_examples=0, methods=METHODS, ablations=[]),
}
TINY = {
    "sst2": dict(model="tiny-bert", train_examples=64, epochs=1, trials=2, budget_steps=0, eval_every=2,
                 robust_examples=4, robust_budget=20, seeds=2, ablation_seeds=1, attack_examples=3,
                 ablation_attack_examples=2, methods=["vanilla", "uegr"], ablations=["uegr-no-adv", "uegr-no-js"]),
    "trec": dict(model="tiny-bert", train_examples=64, epochs=1, trials=2, budget_steps=0, eval_every=2,
                 robust_examples=4, robust_budget=20, seeds=2, ablation_seeds=0, attack_examples=3,
                 ablation_attack_examples=0, methods=["vanilla", "uegr"], ablations=[]),
}
# Stage f: the 67,349 training sentences, 3 epochs; one clean + robust dev evaluation per epoch (2105 steps).
GPU = dict(train_examples=0, epochs=3, seeds=3, attack_examples=500, eval_every=2105)


@dataclass
class Step:
    stage: str
    name: str
    argv: list[str]  # the exact command; empty until the stage it depends on has finished
    env: dict = field(default_factory=dict)
    run_dir: str | None = None  # a training step: an unfinished run folder is removed before a retry
    waiting_on: str = ""

    def shell(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return (env + " " if env else "") + " ".join(shlex.quote(a) for a in self.argv)


def sizes(args) -> dict:
    table = TINY if args.tiny else FULL
    return {t: table[t] for t in args.tasks.split(",")}


def base_sets(task: str, s: dict, threads: int = 1) -> list[str]:
    """The protocol of bench/reproduce.py (5k sentences, 1 epoch, MiniLM, lr 2e-4, batch 32, length 64),
    plus the dev-side robust evaluation that the harmonic objective needs."""
    from bench.reproduce import base_overrides

    ns = SimpleNamespace(train_examples=s["train_examples"], max_length=64, model=s["model"], lr=2e-4,
                         epochs=s["epochs"], batch_size=32, threads=threads, group_by_length=True)
    sets = [o for o in base_overrides(ns) if not o.startswith("runtime.eval_every")]
    sets = [f"data.source={task}" if o.startswith("data.source=") else o for o in sets]
    return sets + [f"runtime.eval_every={s['eval_every']}", f"runtime.robust_eval_every={s['eval_every']}",
                   "runtime.robust_eval_recipe=deepwordbug", f"runtime.robust_eval_examples={s['robust_examples']}",
                   f"runtime.robust_eval_budget={s['robust_budget']}", "runtime.select_on=harmonic",
                   "optim.seed=0"]


def storage(runs: Path, task: str, method: str) -> str:
    """One SQLite file per study: studies run side by side, and two processes creating one file's schema at
    once collide."""
    return f"sqlite:///{(runs / task / f'{study_name(task, method)}.db').resolve()}"


def study_name(task: str, method: str) -> str:
    return f"fair-{task}-{method}"


def sweep_argv(runs: Path, task: str, method: str, s: dict, seed: int) -> list[str]:
    argv = [sys.executable, "-m", "uegr.cli", "sweep", "--study", study_name(task, method), "--storage",
            storage(runs, task, method), "--runs-dir", str(runs / task / "sweeps"), "--space", str(SPACES / f"{method}.yaml"),
            "--objective", "harmonic", "--trials", str(s["trials"]), "--sampler", "tpe", "--seed", str(seed),
            "--budget-steps", str(s["budget_steps"]), "--pruner", "none", "--retry-failed", "2", "--quiet",
            "--enqueue-base"]
    # no pruner: each trial reports once, at its end, so pruning could only discard finished trials.
    # --enqueue-base: every method's trial 0 is its own defaults, so no method ends below its default setting.
    for o in base_sets(task, s) + [f"method.name={method}"]:
        argv += ["--set", o]
    return argv


def best_params(runs: Path, task: str, method: str) -> tuple[dict, dict] | None:
    """(params, metrics) of a finished study's best trial; None while the study is unfinished."""
    from uegr.runs import RunStore
    from uegr.sweep.study import create_or_load, finished

    if not (runs / task / f"{study_name(task, method)}.db").exists():
        return None
    try:
        study, spec = create_or_load(study_name(task, method), storage(runs, task, method), None,
                                     RunStore(runs / task / "sweeps"))
    except Exception:  # noqa: BLE001 - no such study yet
        return None
    if finished(study) < spec.trials:
        return None
    try:
        t = study.best_trial
    except ValueError:
        return None
    base = next((b for b in study.trials if b.user_attrs.get("base") and b.value is not None), None)
    defaults = {k: base.user_attrs.get(k) for k in ("clean_acc", "robust_acc", "harmonic")} if base else {}
    return t.params, {"trial": t.number, "value": t.value, "defaults": defaults,
                      **{k: t.user_attrs.get(k) for k in ("clean_acc", "robust_acc", "harmonic", "run")}}


def train_step(runs: Path, task: str, stage: str, name: str, sets: list[str]) -> Step:
    confirm = runs / task / "confirm"
    argv = [sys.executable, "-m", "uegr.cli", "train", "--name", name, "--quiet"]
    for o in sets:
        argv += ["--set", o]
    return Step(stage, f"{task}-train-{name}", argv, {"UEGR_HOME": str(confirm)}, str(confirm / name))


def attack_step(runs: Path, task: str, stage: str, name: str, s: dict, args, n: int | None = None) -> Step:
    argv = [sys.executable, str(Path(__file__).resolve()), "--runs-dir", str(runs), "--attack-run", name,
            "--task", task, "--attack-examples", str(n or s["attack_examples"])]
    if args.tiny:
        argv.append("--tiny")
    return Step(stage, f"{task}-attack-{name}", argv)


def _fmt(v) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def build_plan(args) -> list[Step]:
    """Every step of the protocol in order; steps that need an unfinished stage's result are listed with
    an empty command and what they wait on (nothing is run or trained here)."""
    from bench.reproduce import METHOD_OVERRIDES

    runs = Path(args.runs_dir)
    plan: list[Step] = []
    for task, s in sizes(args).items():
        for m in s["methods"]:
            plan.append(Step("a", f"{task}-sweep-{m}", sweep_argv(runs, task, m, s, args.seed)))
        chosen = {m: best_params(runs, task, m) for m in s["methods"]}
        for m in s["methods"]:
            for seed in range(s["seeds"]):
                name = f"{m}-s{seed}"
                if chosen[m] is None:
                    plan.append(Step("b", f"{task}-train-{name}", [], waiting_on=f"{task}-sweep-{m}"))
                    plan.append(Step("c", f"{task}-attack-{name}", [], waiting_on=f"{task}-sweep-{m}"))
                    continue
                sets = (base_sets(task, s) + [f"method.name={m}"] + [f"{k}={_fmt(v)}" for k, v in chosen[m][0].items()]
                        + [f"optim.seed={seed}"])
                step = train_step(runs, task, "b", name, sets)
                if seed == 0 and not s["budget_steps"] and chosen[m][1].get("run"):
                    # the best trial IS this run (same config, seed 0, full budget): copy it, don't retrain
                    step.argv = [sys.executable, str(Path(__file__).resolve()), "--reuse-trial",
                                 str(runs / task / "sweeps" / chosen[m][1]["run"]), "--into", step.run_dir]
                    step.env = {}
                plan.append(step)
                plan.append(attack_step(runs, task, "c", name, s, args))
        for ab in s["ablations"]:
            for seed in range(s["ablation_seeds"]):
                name = f"{ab}-s{seed}"
                if chosen.get("uegr") is None:
                    plan.append(Step("d", f"{task}-train-{name}", [], waiting_on=f"{task}-sweep-uegr"))
                    plan.append(Step("d", f"{task}-attack-{name}", [], waiting_on=f"{task}-sweep-uegr"))
                    continue
                # UEGR's chosen setting, then the switch that removes one part (bench/reproduce.py's definitions)
                sets = (base_sets(task, s) + [f"{k}={_fmt(v)}" for k, v in chosen["uegr"][0].items()]
                        + METHOD_OVERRIDES[ab] + [f"optim.seed={seed}"])
                plan.append(train_step(runs, task, "d", name, sets))
                plan.append(attack_step(runs, task, "d", name, s, args, s["ablation_attack_examples"]))
    if args.gpu:
        plan += gpu_steps(args, runs)
    plan.append(Step("g", "report", [sys.executable, str(Path(__file__).resolve()), "--runs-dir", str(runs),
                                     "--report-only", "--out", args.out, "--tasks", args.tasks]
                     + (["--tiny"] if args.tiny else [])))
    return plan


def gpu_steps(args, runs: Path) -> list[Step]:
    """Stage f: full SST-2, 3 epochs, on a GPU machine, for UEGR, vanilla and the baseline with the best mean
    DeepWordBug accuracy in stage c, each at its chosen setting."""
    s = {**sizes(args)["sst2"], **GPU}
    out = []
    best = best_baseline(runs, "sst2")
    for m in ["uegr", "vanilla"] + ([best] if best and best != "vanilla" else []):
        chosen = best_params(runs, "sst2", m)
        for seed in range(s["seeds"]):
            name = f"gpu-{m}-s{seed}"
            if chosen is None or best is None:
                out.append(Step("f", f"sst2-train-{name}", [], waiting_on="sst2 stage c"))
                continue
            sets = (base_sets("sst2", s, threads=0) + [f"method.name={m}", "runtime.device=cuda"]
                    + [f"{k}={_fmt(v)}" for k, v in chosen[0].items()] + [f"optim.seed={seed}"])
            out.append(train_step(runs, "sst2", "f", name, sets))
            out.append(attack_step(runs, "sst2", "f", name, s, args))
    return out


def best_baseline(runs: Path, task: str) -> str | None:
    results = collect(runs, task, [m for m in METHODS if m != "uegr"], 3)
    scores = {m: sum(r["attack:deepwordbug"]["accuracy_under_attack"] for r in rs) / len(rs)
              for m, rs in results.items() if rs}
    return max(scores, key=scores.get) if len(scores) == len(METHODS) - 1 else None


# ------------------------------------------------------------------------------------------ sizing
# Training: the earlier table's measured seconds per 5k-sentence, 157-step run (1 thread, two processes side
# by side on this machine; includes the one dev evaluation and CHILD-TUNING's Fisher pass). Short calibration
# runs cannot replace them: RoAST and UEGR refresh their Fisher masks every 50 steps.
HISTORICAL_RUN = {"vanilla": 184, "rdrop": 326, "freelb": 567, "childtuning": 212, "roast": 648, "uegr": 687}
HISTORICAL_VANILLA_STEP = 184 / 157
# Attacks: docs/benchmarks.md measured ~1.5 s per attacked test sentence and recipe on the trained 5k models
# (1 thread, two processes); bench/fair_calibrate.py's 40-step model is fooled sooner (0.18-1.6 s), so it only
# checks the recipes' ratio. TREC's questions (~10 words) are about half of SST-2's test sentences (~19).
ATTACK_SENTENCE = {"sst2": 1.5, "trec": 0.75}
SPLIT_STEPS = {"sst2": 157, "trec": 154}  # ceil(5000/32), ceil(4907/32)


def estimate(calib: dict, s: dict, task: str) -> dict[str, float]:
    """Core-seconds per stage of one task (see the constants above for where each cost comes from)."""
    robust = s["robust_examples"] * calib["attack_seconds_per_sentence"]["deepwordbug"] * 2  # trained: x2
    evals = -(-SPLIT_STEPS[task] // s["eval_every"])

    def run(m: str) -> float:
        frac = min(s["budget_steps"] or SPLIT_STEPS[task], SPLIT_STEPS[task]) / 157
        return HISTORICAL_RUN[m.split("-")[0] if m.startswith("uegr") else m] * frac + evals * robust

    per = ATTACK_SENTENCE[task] * len(RECIPES.split(","))
    reuse = 0 if s["budget_steps"] else 1  # seed 0 is the best trial itself
    return {"sweeps (a)": sum(s["trials"] * run(m) for m in s["methods"]),
            "confirm (b)": sum((s["seeds"] - reuse) * run(m) for m in s["methods"]),
            "attacks (c)": len(s["methods"]) * s["seeds"] * s["attack_examples"] * per,
            "ablations (d)": len(s["ablations"]) * s["ablation_seeds"] * (run("uegr") + s["ablation_attack_examples"] * per)}


def estimate_table(calib: dict, args) -> str:
    measured = calib["step_seconds"]["vanilla"] + calib["dev_eval_seconds"] / 157
    load = max(1.0, measured / HISTORICAL_VANILLA_STEP)
    lines = ["Measured now (1 thread, `bench/fair_calibrate.py`, loaded machine): vanilla "
             f"{calib['step_seconds']['vanilla']:.2f} s/step, dev evaluation {calib['dev_eval_seconds']:.1f} s, "
             "s per attacked sentence on a 40-step model " + ", ".join(
                 f"{r} {v:.2f}" for r, v in calib["attack_seconds_per_sentence"].items())
             + f"; vanilla vs the earlier one-thread time: x{measured / HISTORICAL_VANILLA_STEP:.2f} "
             f"(load factor {load:.2f} divided out).", "",
             "| task | stage | core-hours |", "|---|---|---|"]
    total = 0.0
    for task, s in sizes(args).items():
        sub = 0.0
        for stage, v in estimate(calib, s, task).items():
            lines.append(f"| {task} | {stage} | {v / load / 3600:.1f} |")
            sub += v / load
        lines.append(f"| {task} | **all ({sub / 7200:.1f} wall hours on 2 cores)** | {sub / 3600:.1f} |")
        total += sub
    lines.append(f"| both | **total: {total / 7200:.1f} wall hours on 2 idle cores (--jobs 2)** | {total / 3600:.1f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ running
def step_file(runs: Path, step: Step) -> Path:
    return runs / "steps" / f"{step.name}.json"


def is_done(runs: Path, step: Step) -> bool:
    """Finished with exit code 0 by this very command (a changed size or setting runs the step again; the
    step's own resume then reuses what still fits, e.g. attacked sentences). The report always runs again."""
    f = step_file(runs, step)
    if step.stage == "g":
        return False
    if not f.exists():
        return False
    rec = json.loads(f.read_text())
    return rec.get("rc") == 0 and rec.get("command") == step.shell()


def execute(runs: Path, step: Step, log) -> int:
    from uegr.runs import _atomic_write

    if step.run_dir and Path(step.run_dir).exists():
        status = Path(step.run_dir) / "status.json"
        state = json.loads(status.read_text()).get("state") if status.exists() else None
        if state == "completed":
            rec = {"command": step.shell(), "rc": 0, "note": "run already completed"}
            _atomic_write(step_file(runs, step), json.dumps(rec, indent=1))
            return 0
        shutil.rmtree(step.run_dir)  # an interrupted training: start it again
    logs = runs / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **step.env}
    t0 = time.time()
    log(f"[{step.stage}] {step.name}: {step.shell()}")
    with (logs / f"{step.name}.log").open("ab") as fh:
        rc = subprocess.run(step.argv, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    rec = {"stage": step.stage, "command": step.shell(), "rc": rc, "started": t0, "seconds": time.time() - t0,
           "log": str(logs / f"{step.name}.log")}
    step_file(runs, step).parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(step_file(runs, step), json.dumps(rec, indent=1))
    log(f"[{step.stage}] {step.name}: exit {rc} after {rec['seconds']:.0f} s")
    return rc


def run_all(args, log) -> int:
    runs = Path(args.runs_dir)
    failed = 0
    # Task by task (SST-2 is finished before TREC starts), stage by stage; the plan is rebuilt before each
    # stage because stage b's commands need stage a's best trials.
    for task in [*sizes(args), "report"]:
        if task != "report":
            (runs / task).mkdir(parents=True, exist_ok=True)  # the studies' SQLite files live there
        for stage, phase in [(st, ph) for st in "abcdfg" for ph in ("-train-", "-attack-", "")]:
            # stage d trains its runs before it attacks them
            pending = [s for s in build_plan(args) if s.stage == stage and not is_done(runs, s)
                       and s.name.startswith(f"{task}-" if task != "report" else "report")
                       and phase in s.name and not (phase == "" and ("-train-" in s.name or "-attack-" in s.name))]
            ready = [s for s in pending if s.argv]
            for s in pending:
                if not s.argv:
                    log(f"[{stage}] {s.name}: skipped, waiting on {s.waiting_on}")
            with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                failed += sum(1 for rc in pool.map(lambda s: execute(runs, s, log), ready) if rc != 0)
    return 1 if failed else 0


# ------------------------------------------------------------------------------------------ stage c worker
def attack_settings(n: int) -> SimpleNamespace:
    """bench/reproduce.py's attack settings: 3 recipes, fixed seed-0 subset, 2000 queries, 30 % of words."""
    return SimpleNamespace(recipes=RECIPES, attack_examples=n, pwws_examples=n, attack_seed=0, query_budget=2000,
                           max_perturb=0.3)


def attack_run(args) -> None:
    import torch

    from bench.reproduce import evaluate_and_attack
    from uegr.data import load_dataset
    from uegr.runs import RunStore

    torch.set_num_threads(1)
    run = RunStore(Path(args.runs_dir) / args.task / "confirm").get(args.attack_run)
    dataset = load_dataset(run.config().data)
    evaluate_and_attack(run, dataset, attack_settings(args.attack_examples), lambda m: print(m, flush=True))


# ------------------------------------------------------------------------------------------ report
def collect(runs: Path, task: str, methods: list[str], seeds: int, n: int | None = None) -> dict[str, list[dict]]:
    from bench.reproduce import attacks_match
    from uegr.runs import RunError, RunStore

    store = RunStore(runs / task / "confirm")
    out: dict[str, list[dict]] = {}
    for m in methods:
        for seed in range(seeds):
            try:
                rec = store.get(f"{m}-s{seed}").analyses("reproduce").get("reproduce")
            except RunError:
                continue
            if rec and (n is None or attacks_match(rec, attack_settings(n))):
                out.setdefault(m, []).append(rec)
    return out


def task_section(args, runs: Path, task: str, s: dict) -> list[str]:
    import tempfile

    from bench.reproduce import paired_rows, write_results
    from uegr.config import build_config
    from uegr.data import load_dataset
    from uegr.runs import RunStore

    lines = [f"### {task}: equal-effort sweeps (stage a; dev set only)", "",
             "| method | trials done | best trial | clean dev | DeepWordBug dev | harmonic | defaults (trial 0): clean / "
             "DeepWordBug / harmonic | chosen setting |",
             "|---|---|---|---|---|---|---|---|"]
    for m in s["methods"]:
        bp = best_params(runs, task, m)
        if bp is None:
            lines.append(f"| {m} | not finished | - | - | - | - | - | - |")
            continue
        p, met = bp
        pct = lambda v: f"{100 * v:.1f}" if isinstance(v, int | float) else "-"  # noqa: E731
        d = met.get("defaults") or {}
        base = " / ".join(pct(d.get(k)) for k in ("clean_acc", "robust_acc", "harmonic")) if d else "-"
        lines.append(f"| {m} | {s['trials']} | {met['trial']} | {pct(met['clean_acc'])} | {pct(met['robust_acc'])} "
                     f"| {pct(met['harmonic'])} | {base} | {', '.join(f'{k}={v:.3g}' if isinstance(v, float) else f'{k}={v}' for k, v in p.items())} |")
    names = s["methods"] + s["ablations"]
    rows = collect(runs, task, s["methods"], s["seeds"], s["attack_examples"])
    rows.update(collect(runs, task, s["ablations"], s["ablation_seeds"], s["ablation_attack_examples"]))
    if not rows:
        return lines + ["", f"Stages b-d for {task}: no finished confirmation run yet."]
    cfg = build_config(None, None, base_sets(task, s))
    num_test = len(load_dataset(cfg.data).splits["test"].texts)
    a = attack_settings(s["attack_examples"])
    full = [m for m in names if len(rows.get(m, [])) == (s["seeds"] if m in s["methods"] else s["ablation_seeds"])]
    ns = SimpleNamespace(**vars(a), seeds=",".join(str(i) for i in range(s["seeds"])), train_examples=s["train_examples"],
                         max_length=64, batch_size=32, group_by_length=True, lr="searched", epochs=s["epochs"])
    paired = paired_rows(RunStore(runs / task / "confirm"), ns, [m for m in full if m in s["methods"]], num_test)
    if s["ablations"]:
        # the ablations' sentences are the first ablation_attack_examples of the same seeded order as UEGR's
        ns_ab = SimpleNamespace(**{**vars(ns), "seeds": ",".join(str(i) for i in range(s["ablation_seeds"])),
                                   "attack_examples": s["ablation_attack_examples"],
                                   "pwws_examples": s["ablation_attack_examples"]})
        paired += paired_rows(RunStore(runs / task / "confirm"), ns_ab, ["uegr"] + [m for m in full if m in s["ablations"]],
                              num_test)
    with tempfile.TemporaryDirectory() as tmp:
        write_results(Path(tmp) / "t.md", rows, ns, "", [], 0.0, wall_note=False, paired=paired)
        body = (Path(tmp) / "t.md").read_text().split("## Results", 1)[1].split("## Settings", 1)[0]
    body = body.replace(" (mean ± std over seeds, %)", "", 1).replace("SST-2 ", f"{task} ")
    claims = claim_lines(paired, RECIPES.split(","))
    goal = goal_lines({m: rows[m] for m in full if m in s["methods"]}, paired, RECIPES.split(","), s["methods"])
    return (lines + ["", f"### {task}: confirmation on test (stages b-d; mean ± std over seeds, %)"]
            + [""] + body.strip().splitlines() + ["", "Differences whose paired interval excludes 0 (the only ones "
                                                   "this section claims):", ""] + (claims or ["- none"])
            + ["", "The goal, checked (UEGR's paired interval above 0 against every baseline under every attack; "
                   "mean clean test accuracy within 0.5 point of the best method's):", ""] + goal)


def parse_paired(paired: list[str], recipes: list[str]) -> dict[str, dict[str, tuple[float, float, float] | None]]:
    """paired_rows' markdown rows back to numbers: {"uegr − vanilla": {recipe: (diff, lo, hi) or None}}."""
    out = {}
    for row in paired:
        cells = [c.strip() for c in row.strip("|").split("|")]
        parsed = {}
        for recipe, cell in zip(recipes, cells[1:]):
            if cell == "-":
                parsed[recipe] = None
                continue
            diff, rest = cell.split("[", 1)
            lo, hi = (float(x) for x in rest.rstrip("]").split(","))
            parsed[recipe] = (float(diff), lo, hi)
        out[cells[0]] = parsed
    return out


def claim_lines(paired: list[str], recipes: list[str]) -> list[str]:
    out = []
    for comparison, by_recipe in parse_paired(paired, recipes).items():
        for recipe, value in by_recipe.items():
            if value is None:
                continue
            diff, lo, hi = value
            if lo > 0 or hi < 0:
                out.append(f"- {comparison}, {recipe}: {diff:+.1f} [{lo:+.1f}, {hi:+.1f}] points "
                           f"({'UEGR higher' if lo > 0 else 'UEGR lower'})")
    return out


def goal_lines(rows: dict[str, list[dict]], paired: list[str], recipes: list[str], baselines: list[str],
               target: str = "uegr", clean_margin: float = 0.5) -> list[str]:
    """The issue's goal, checked against the tables: UEGR's interval above 0 against every baseline under
    every attack, and its mean clean test accuracy within clean_margin points of the best method's."""
    import statistics

    have = [m for m in baselines if m in rows and m != target]
    if target not in rows or not have:
        return ["- not checked yet: UEGR and at least one baseline need all their seeds attacked"]
    clean = {m: 100 * statistics.mean(r["test_accuracy"] for r in rows[m]) for m in [target, *have]}
    best = max(clean, key=clean.get)
    gap = clean[best] - clean[target]
    clean_ok = gap <= clean_margin
    lines = [f"- clean test accuracy: {target} {clean[target]:.1f}, best {best} {clean[best]:.1f} "
             f"(gap {max(gap, 0):.1f} points): {'within' if clean_ok else 'not within'} {clean_margin} point"]
    pairs = parse_paired(paired, recipes)
    attacks_ok = True
    for recipe in recipes:
        above, below, level = [], [], []
        for m in have:
            value = (pairs.get(f"{target} − {m}") or {}).get(recipe)
            if value is None:
                level.append(f"{m} (no paired data)")
                continue
            diff, lo, hi = value
            (above if lo > 0 else below if hi < 0 else level).append(f"{m} {diff:+.1f} [{lo:+.1f}, {hi:+.1f}]")
        attacks_ok = attacks_ok and len(above) == len(have)
        mine = 100 * statistics.mean(r[f"attack:{recipe}"]["accuracy_under_attack"] for r in rows[target]
                                     if r.get(f"attack:{recipe}"))
        lines.append(f"- {recipe}: {target} {mine:.1f} %; above {len(above)} of {len(have)} baselines"
                     + (f" ({'; '.join(above)})" if above else "")
                     + (f"; below {'; '.join(below)}" if below else "")
                     + (f"; not distinguishable from {'; '.join(level)}" if level else ""))
    missing = [m for m in baselines if m != target and m not in have]
    verdict = "met" if clean_ok and attacks_ok and not missing else "not met"
    lines.append(f"- goal {verdict}" + (f" (not yet attacked: {', '.join(missing)})" if missing else ""))
    return lines


def status_lines(args, runs: Path) -> list[str]:
    plan = build_plan(args)
    done = sum(1 for s in plan if s.stage != "g" and is_done(runs, s))
    return [f"Status: {done} of {sum(1 for s in plan if s.stage != 'g')} steps finished in `{args.runs_dir}` "
            f"(stage g is this report)."]


def report(args) -> None:
    runs = Path(args.runs_dir)
    header = (REPO / "bench" / "fair_protocol_header.md").read_text(encoding="utf-8").strip()
    lines = [START, header, "", *status_lines(args, runs), ""]
    for task, s in sizes(args).items():
        lines += task_section(args, runs, task, s) + [""]
    lines.append(END)
    out = Path(args.out)
    text = out.read_text(encoding="utf-8") if out.exists() else ""
    section = "\n".join(lines)
    if START in text and END in text:
        text = text.split(START, 1)[0] + section + text.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    from uegr.runs import _atomic_write

    _atomic_write(out, text)
    print(f"wrote the fair re-run section of {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs-dir", default="runs/fair")
    ap.add_argument("--tasks", default="sst2,trec")
    ap.add_argument("--tiny", action="store_true", help="dry run: tiny-bert, 64 sentences, 2 trials, 3 attacked sentences")
    ap.add_argument("--gpu", action="store_true", help="add stage f (needs a CUDA machine)")
    ap.add_argument("--jobs", type=int, default=2, help="steps of one stage run side by side (one thread each)")
    ap.add_argument("--seed", type=int, default=0, help="the sampler seed of every study")
    ap.add_argument("--plan", action="store_true", help="print the plan (JSON) and run nothing")
    ap.add_argument("--report-only", action="store_true", help="only regenerate the docs section")
    ap.add_argument("--out", default="docs/results.md")
    ap.add_argument("--estimate", metavar="CALIBRATION_JSON", help="print the time estimate of these sizes from "
                    "bench/fair_calibrate.py's measurements and run nothing")
    ap.add_argument("--reuse-trial", help=argparse.SUPPRESS)  # stage b, seed 0: copy the best trial's run
    ap.add_argument("--into", help=argparse.SUPPRESS)
    ap.add_argument("--attack-run", help=argparse.SUPPRESS)  # stage c worker: attack one confirmation run
    ap.add_argument("--task", default="sst2", help=argparse.SUPPRESS)
    ap.add_argument("--attack-examples", type=int, default=500, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.reuse_trial:
        shutil.copytree(args.reuse_trial, args.into)
        print(f"{args.into}: a copy of the finished sweep trial {args.reuse_trial} (same config, seed 0)")
        return 0
    if args.attack_run:
        attack_run(args)
        return 0
    if args.estimate:
        print(estimate_table(json.loads(Path(args.estimate).read_text()), args))
        return 0
    if args.plan:
        print(json.dumps([{"stage": s.stage, "step": s.name, "command": s.shell(), "waiting_on": s.waiting_on,
                           "done": is_done(Path(args.runs_dir), s)} for s in build_plan(args)], indent=1))
        return 0
    if args.report_only:
        report(args)
        return 0
    log = lambda m: print(time.strftime("%H:%M:%S ") + m, flush=True)  # noqa: E731
    log(f"fair protocol in {args.runs_dir}: " + " ".join(shlex.quote(a) for a in sys.argv))
    return run_all(args, log)


if __name__ == "__main__":
    sys.exit(main())
