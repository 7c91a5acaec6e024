"""`uegr attack`: attack a trained run (or a Hugging Face classifier folder) and save the results.

`uegr.cli` adds it with add_attack_parser(subparsers); cmd_attack(args) -> exit code (0 ok, 2 error,
130 interrupted), errors handled by uegr.cli_errors.run_command.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .. import jobs
from ..cli_errors import run_command
from .recipes import DEFAULT_RECIPE, RECIPES, AttackError, get_recipe, list_recipes

SPLITS = ("validation", "test", "train")
# Bounds checked before any work starts: an attack costs up to query_budget model calls per example.
MAX_EXAMPLES = 100_000
MAX_QUERY_BUDGET = 100_000
SECONDS_PER_QUERY = 0.004  # a rough CPU figure for a small encoder at short lengths (not a measurement)


def add_attack_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "attack", help="adversarial attacks (TextAttack recipes that run offline) on a trained run",
        description="Attack N fixed, seed-chosen examples of a run's data split (or of a labelled file) and "
                    "report clean accuracy, accuracy under attack, attack success rate, perturbed-word %% and "
                    "queries (TextAttack's definitions). Results are saved in the run's analyses folder (for a "
                    "classifier folder that is not a run: <runs>/_external/, never inside that folder); "
                    "rerunning the same command resumes an interrupted attack.")
    p.add_argument("run", nargs="?", metavar="RUN",
                   help="run name or run folder, or a Hugging Face classifier folder (then use --file)")
    p.add_argument("--recipe", default=DEFAULT_RECIPE, metavar="NAME",
                   help=f"attack recipe (default {DEFAULT_RECIPE}); one of: {', '.join(RECIPES)}")
    p.add_argument("-n", "--num-examples", type=int, default=100, help="examples to attack (default 100; 0 = all)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--split", choices=SPLITS, default=None, help="data split of the run (default validation)")
    src.add_argument("--file", metavar="PATH", help="labelled .csv/.tsv/.json/.jsonl file to attack instead")
    p.add_argument("--text-column", default="text", help="text column of --file (default text)")
    p.add_argument("--label-column", default="label", help="label column of --file (default label)")
    p.add_argument("--query-budget", type=int, default=2000, help="model queries per example (default 2000; 0 = none)")
    p.add_argument("--max-perturb", type=float, default=0.3,
                   help="max fraction of words perturbed per example (default 0.3; 1 = no cap)")
    p.add_argument("--seed", type=int, default=0, help="seed choosing the examples (default 0)")
    p.add_argument("--runs-dir", default=None, help="runs folder (default $UEGR_HOME or ./runs)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--fresh", action="store_true", help="discard saved records instead of resuming")
    p.add_argument("--json", action="store_true", help="print the summary (or recipe list) as JSON")
    p.add_argument("--list-recipes", action="store_true", help="list recipes and whether they run here, then exit")
    p.set_defaults(func=cmd_attack)
    return p


def _print_recipes(as_json: bool) -> int:
    rows = list_recipes()
    if as_json:
        print(json.dumps(rows, indent=1))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        state = "available" if r["available"] else "unavailable"
        print(f"{r['name']:<{width}}  {state:<11}  {r['description']}")
        if not r["available"]:
            print(f"{'':<{width}}  {'':<11}  -> {r['reason']}")
    return 0


def _is_hf_folder(path: Path) -> bool:
    cfg = path / "config.json"
    if not cfg.is_file():
        return False
    try:
        raw = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(raw, dict) and "model_type" in raw


def _model_label_names(model) -> list[str] | None:
    id2label = getattr(model.config, "id2label", None) or {}
    names = [str(id2label[i]) for i in sorted(id2label)] if id2label else []
    if not names or all(n.startswith("LABEL_") for n in names):
        return None
    return names


def _progress_bar(total: int, desc: str):
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="ex", dynamic_ncols=True, file=sys.stderr)

    def update(done: int, tot: int, eta: float | None) -> None:
        jobs.report(done, tot, f"{done}/{tot} examples", eta_s=eta)
        if jobs.stop_requested():
            raise KeyboardInterrupt  # finished examples are saved; the same command resumes
        bar.n = done
        if eta is not None:
            m, s = divmod(int(eta), 60)
            bar.set_postfix_str(f"ETA {m}:{s:02d}", refresh=False)
        bar.refresh()

    return bar, update


def cmd_attack(args) -> int:
    return run_command("uegr attack", _attack, args,
                       "interrupted: finished examples are saved; rerun the same command to resume")


def _attack(args) -> int:
    if getattr(args, "list_recipes", False):
        return _print_recipes(args.json)
    if not args.run:
        raise AttackError("give RUN (a run name/folder or a classifier folder), or --list-recipes")
    recipe = get_recipe(args.recipe)
    if not 0 <= args.num_examples <= MAX_EXAMPLES:
        raise AttackError(f"--num-examples={args.num_examples} is out of range: use 0 (all, at most {MAX_EXAMPLES}) "
                          f"to {MAX_EXAMPLES}")
    if not 0 < args.max_perturb <= 1:
        raise AttackError("--max-perturb must be in (0, 1]")
    if not 0 <= args.query_budget <= MAX_QUERY_BUDGET:
        raise AttackError(f"--query-budget={args.query_budget} is out of range: use 0 (none) to {MAX_QUERY_BUDGET}")
    if args.seed < 0:
        raise AttackError(f"--seed={args.seed} must be >= 0")
    if args.device not in ("auto", "cpu", "mps") and not args.device.startswith("cuda"):
        raise AttackError(f"--device {args.device!r}: use auto, cpu or cuda")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise AttackError(f"--device {args.device}: no CUDA GPU is available here; use --device cpu")
    ok, reason = recipe.available()
    if not ok:
        raise AttackError(f"recipe {args.recipe!r} is unavailable here: {reason}")

    import torch

    from ..config import DataConfig
    from ..data import load_dataset, read_records, records_to_split
    from ..models import load_checkpoint
    from ..runs import RunStore, atomic_write_bytes

    run = None
    path = Path(args.run).expanduser()
    if _is_hf_folder(path):
        model_dir = path
    else:
        run = RunStore(args.runs_dir).get(args.run)
        model_dir = run.best_checkpoint()
    model, tokenizer = load_checkpoint(model_dir)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device not in ("cpu", "cuda"):
        raise AttackError(f"--device {device}: use auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise AttackError("--device cuda: no CUDA GPU is visible here; use --device cpu (or auto)")
    model.to(device).eval()

    if args.file:
        fpath = Path(args.file).expanduser()
        names = _model_label_names(model)
        dcfg = DataConfig(source=str(fpath), text_column=args.text_column, label_column=args.label_column,
                          label_names=names or [])
        split, label_names = records_to_split(read_records(fpath), dcfg, str(fpath), names)
        split_name = "file-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in fpath.stem)
    else:
        if run is None:
            raise AttackError(f"{path} is a classifier folder, not a run: give the examples with --file PATH")
        split_name = args.split or "validation"
        data_cfg = dataclasses.replace(run.config().data, max_eval_examples=0)
        ds = load_dataset(data_cfg)
        if split_name not in ds.splits:
            raise AttackError(f"run {run.name!r}: its data has no {split_name!r} split "
                              f"(it has {', '.join(ds.splits)}); use --split or --file")
        split, label_names = ds.splits[split_name], ds.label_names
    if split.pairs is not None:
        raise AttackError("attacks on sentence-pair data are not supported yet")
    if max(split.labels) >= model.config.num_labels:
        raise AttackError(f"the data has labels up to {max(split.labels)} but the model has "
                          f"{model.config.num_labels} classes")

    name = f"attack-{args.recipe}-{split_name}"
    out_dir = (run.analyses_dir if run is not None else RunStore(args.runs_dir).external_analyses_dir(model_dir)) / name
    n = args.num_examples or len(split)
    if n > MAX_EXAMPLES:
        raise AttackError(f"{len(split)} examples in {split_name}: give --num-examples at most {MAX_EXAMPLES}")
    budget = args.query_budget or 2000
    print(f"attacking {min(n, len(split))} examples with {args.recipe}; at most ~"
          f"{min(n, len(split)) * budget * SECONDS_PER_QUERY / 60:.0f} min at the query budget "
          "(usually far less)", file=sys.stderr)
    bar, update = _progress_bar(min(n, len(split)), f"{args.recipe} ({split_name})")
    from .runner import attack_dataset

    try:
        summary = attack_dataset(model, tokenizer, split.texts, split.labels, recipe=args.recipe, n=n,
                                 seed=args.seed, query_budget=args.query_budget or None,
                                 max_perturb_fraction=args.max_perturb if args.max_perturb < 1 else None,
                                 out_dir=out_dir, progress=update, label_names=label_names,
                                 resume=not args.fresh)
    finally:
        bar.close()
    summary.update({"split": split_name, "model": str(model_dir), "run": run.name if run else None,
                    "file": str(args.file) if args.file else None})
    if run is not None:
        saved = run.write_analysis(name, summary)
    else:
        saved = out_dir.parent / f"{name}.json"
        atomic_write_bytes(saved, json.dumps(summary, indent=1).encode("utf-8"))
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        _print_summary(summary, saved)
    return 0


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _print_summary(s: dict, saved: Path) -> None:
    print(f"recipe {s['recipe']} on {s['split']}: {s['num_examples']} examples "
          f"({s['successful']} successful, {s['failed']} failed, {s['skipped']} skipped"
          f"{', ' + str(s['resumed']) + ' resumed' if s['resumed'] else ''})")
    print(f"  clean accuracy          {_pct(s['clean_accuracy'])}")
    print(f"  accuracy under attack   {_pct(s['accuracy_under_attack'])}")
    print(f"  attack success rate     {_pct(s['attack_success_rate'])}")
    apw = s["avg_perturbed_word_pct"]
    print(f"  avg perturbed words     {'n/a' if apw is None else f'{apw:.1f}%'}")
    aq = s["avg_queries"]
    print(f"  avg queries             {'n/a' if aq is None else f'{aq:.1f}'}")
    print(f"saved {saved} (records: {s['records']})")
