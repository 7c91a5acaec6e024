"""`uegr landscape RUN --kind ...`: probe a run's best checkpoint and save analyses/landscape-<kind>.json."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..cli_errors import run_command
from .probes import KINDS, LandscapeError, _n_examples, fixed_batches
from .run import ProbeSettings, check_settings, estimate_cost, probe_run


def add_landscape_parser(subparsers) -> argparse.ArgumentParser:
    """Add `landscape` to an argparse subparsers object; sets func=cmd_landscape."""
    p = subparsers.add_parser(
        "landscape", help="loss-landscape flatness probes of a run's best checkpoint",
        description="Probe the loss landscape of a run's best checkpoint (dropout off, float32, a fixed "
                    "seeded subset of a split) and save the result as analyses/landscape-<kind>.json.")
    p.add_argument("run", metavar="RUN", help="run name (in --runs-dir) or run folder")
    p.add_argument("--kind", choices=KINDS, default="slice1d")
    p.add_argument("--split", default="validation", help="data split of the run's dataset (default validation)")
    p.add_argument("--examples", type=int, default=256, help="fixed examples to evaluate on (0 = all)")
    p.add_argument("--batch-size", type=int, default=ProbeSettings.batch_size)
    p.add_argument("--max-length", type=int, default=0, help="0 = the run's data.max_length")
    p.add_argument("--points", type=int, default=21, help="points per axis (slices, interp)")
    p.add_argument("--span", type=float, default=1.0, help="slices cover alpha in [-span, span]")
    p.add_argument("--margin", type=float, default=0.25, help="interp covers alpha in [-margin, 1+margin]")
    p.add_argument("--seed", type=int, default=0, help="seed of the directions, subset and random vectors")
    p.add_argument("--k", type=int, default=1, help="hessian: top eigenvalues to compute")
    p.add_argument("--iters", type=int, default=20, help="hessian: power-iteration steps per eigenvalue")
    p.add_argument("--samples", type=int, default=20, help="hessian: Hutchinson vectors for the trace")
    p.add_argument("--rho", type=float, default=0.05, help="sharpness: SAM radius")
    p.add_argument("--eps", type=float, default=1e-3, help="sharpness: Keskar box size")
    p.add_argument("--params", choices=("all", "encoder", "no_embeddings"), default="all")
    p.add_argument("--other", metavar="RUN", help="interp: the other run, checkpoint folder, or 'pretrained'")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--runs-dir", default=None, help="runs folder (default $UEGR_HOME or ./runs)")
    p.add_argument("--stop-file", default=None, help="stop cleanly (saving partial results) when this file appears")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_landscape)
    return p


def _checkpoint_position_limit(ckpt: Path) -> int | None:
    try:
        n = json.loads((ckpt / "config.json").read_text(encoding="utf-8")).get("max_position_embeddings")
    except (OSError, ValueError, AttributeError):
        return None
    return n if isinstance(n, int) and n > 0 else None


def _resolve_other(store, spec: str, run):
    """A checkpoint folder, or a Module for 'pretrained' (the run's base model, fresh head)."""
    if spec == "pretrained":
        from ..models import load_model

        cfg = run.config()
        ckpt_cfg = json.loads((run.best_checkpoint() / "config.json").read_text(encoding="utf-8"))
        num_labels = len(ckpt_cfg.get("id2label") or {}) or 2
        model, _ = load_model(cfg.model, num_labels, seed=cfg.optim.seed)
        return model, f"pretrained:{cfg.model.name}"
    path = Path(spec)
    if (path / "config.json").is_file() and not (path / "status.json").is_file():
        return path, str(path)
    other_run = store.get(spec)
    return other_run.best_checkpoint(), other_run.name


def cmd_landscape(args) -> int:
    """`uegr landscape RUN --kind ...`: 0 on success (also when stopped via --stop-file), 2 on errors."""
    return run_command("uegr landscape", _landscape, args)


def _landscape(args) -> int:
    from .. import jobs
    from ..data import load_dataset
    from ..models import load_tokenizer
    from ..runs import RunStore

    store = RunStore(args.runs_dir)
    run = store.get(args.run)
    ckpt = run.best_checkpoint()
    cfg = run.config()
    settings = ProbeSettings(split=args.split, examples=args.examples, batch_size=args.batch_size,
                             max_length=args.max_length or cfg.data.max_length, points=args.points,
                             span=args.span, margin=args.margin, seed=args.seed, k=args.k, iters=args.iters,
                             samples=args.samples, rho=args.rho, eps=args.eps, params=args.params)
    check_settings(args.kind, settings, _checkpoint_position_limit(ckpt))
    if args.device != "auto" and args.device != "cpu" and not args.device.startswith(("cuda", "mps")):
        raise LandscapeError(f"--device {args.device!r}: use auto, cpu or cuda")
    if args.kind == "interp" and not args.other:
        raise LandscapeError("--kind interp needs --other RUN (a run, a checkpoint folder or 'pretrained')")
    print(f"landscape {args.kind}: estimated ~{estimate_cost(args.kind, settings):.0f} s of probing for "
          f"{settings.examples or 'all'} examples (checked before loading)", file=sys.stderr)
    ds = load_dataset(cfg.data)
    if args.split not in ds.splits:
        raise LandscapeError(f"split {args.split!r} not in this run's data (have {', '.join(ds.splits)})")
    tokenizer = load_tokenizer(str(ckpt))
    batches = fixed_batches(ds.splits[args.split], tokenizer, settings.examples, settings.batch_size,
                            settings.max_length, settings.seed)
    other, other_name = (None, None)
    if args.kind == "interp":
        other, other_name = _resolve_other(store, args.other, run)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LandscapeError(f"--device {device}: no CUDA GPU is available here; use --device cpu")
    stop_path = Path(args.stop_file) if args.stop_file else None
    should_stop = lambda: (stop_path is not None and stop_path.exists()) or jobs.stop_requested()  # noqa: E731
    bar = None
    progress = None
    if not args.no_progress or jobs.current() is not None:
        from tqdm.auto import tqdm

        def progress(done: int, total: int) -> None:
            nonlocal bar
            jobs.report(done, total, f"{args.kind}: {done}/{total}")
            if args.no_progress:
                return
            if bar is None or bar.total != total or done < bar.n:
                if bar is not None:
                    bar.close()
                bar = tqdm(total=total, desc=f"landscape {args.kind}", file=sys.stderr, leave=False)
            bar.update(done - bar.n)

    est = estimate_cost(args.kind, settings, n_examples=_n_examples(batches))
    print(f"landscape {args.kind} of {run.name} ({ckpt.name} checkpoint) on {_n_examples(batches)} "
          f"{args.split} examples; estimated ~{est:.0f} s", file=sys.stderr)
    try:
        result = probe_run(ckpt, args.kind, settings, batches=batches, tokenizer=tokenizer, other=other,
                           progress=progress, should_stop=should_stop, device=device)
    finally:
        if bar is not None:
            bar.close()
    result.update(run=run.name, checkpoint=str(ckpt), data=cfg.data.source)
    if other_name:
        result["other"] = other_name
    path = run.write_analysis(f"landscape-{args.kind}", result)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'stopped early; partial ' if result['stopped'] else ''}result saved to {path} "
              f"({result['seconds']:.1f} s)", file=sys.stderr)
        print(_brief(result))
    return 0


def _brief(r: dict) -> str:
    k = r["kind"]
    if k in ("slice1d", "interp", "slice2d"):
        extra = f", max increase {r['max_increase']:.4f}" if "max_increase" in r else ""
        return f"{k}: loss at the checkpoint {r['loss']:.4f}{extra}"
    if k == "hessian":
        ev = ", ".join(f"{v:.4g}" for v in r.get("eigenvalues", []))
        tr = r.get("trace")
        return f"hessian: top eigenvalue(s) {ev or '-'}; trace {tr if tr is None else format(tr, '.4g')}"
    sam, eps = r.get("sam", {}), r.get("eps", {})
    return (f"sharpness: SAM(rho={sam.get('rho')}) {sam.get('sharpness', float('nan')):.4g}; "
            f"eps-sharpness(eps={eps.get('eps')}) {eps.get('sharpness', float('nan')):.4g}")
