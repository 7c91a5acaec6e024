"""`uegr` command line: thin wrappers that parse, call the library and print (JSON with --json)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from . import config as C
from .runs import RunError, RunStore

EXAMPLES = """examples:
  uegr train --preset quick-demo
  uegr train --preset tiny --set method.k=2 --set optim.max_steps=20 --name my-run
  uegr train --config my.yaml --set data.source=sst2 --set data.max_train_examples=5000
  uegr train --name my-run --resume
  uegr eval my-run --split test          uegr eval my-run --file adversarial.csv
  uegr predict my-run "a gorgeous, witty film"
  uegr runs --json
"""


class ProgressPrinter:
    """A tqdm bar on stderr for training, plus eval lines."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.bar = None

    def on_train_start(self, trainer):
        if self.quiet:
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(total=trainer.total_steps, initial=trainer.step, desc=trainer.cfg.method.name,
                        unit="step", file=sys.stderr, dynamic_ncols=True)

    def on_step_end(self, trainer, record):
        if self.bar is not None:
            self.bar.update(record["step"] - self.bar.n)
            self.bar.set_postfix(loss=f"{record.get('loss', 0):.4f}", ex_s=f"{record['examples_per_s']:.1f}")

    def on_evaluate(self, trainer, metrics):
        if self.bar is not None:
            self.bar.write(f"step {metrics['step']}: {metrics['split']} accuracy {metrics['accuracy']:.4f} "
                           f"loss {metrics['loss']:.4f}")

    def on_mask_refresh(self, trainer, step):
        pass

    def on_checkpoint(self, trainer, path):
        pass

    def on_train_end(self, trainer, state, error):
        if self.bar is not None:
            self.bar.close()

    def should_stop(self, trainer):
        return False


def cmd_train(args) -> int:
    from .trainer import RunRecorder, Trainer

    store = RunStore(args.runs_dir)
    if args.resume:
        if not args.name:
            raise RunError("--resume needs --name of the run to continue")
        run = store.get(args.name)
        st = run.status()
        if st.get("state") == "running":
            raise RunError(f"run {run.name!r} is still running (pid {st.get('pid')}); stop it before resuming")
        cfg = run.config()
        if args.set:
            C.apply_overrides(cfg, args.set)
            C.validate(cfg)
            run.write_config(cfg)
    else:
        cfg = C.build_config(args.preset, args.config, args.set)
        if args.name:
            try:
                existing = store.get(args.name)
            except RunError:
                existing = None
            if existing is not None and existing.raw_status().get("state") == "queued" and not existing.has_checkpoint():
                run = existing  # created by the app (queued), started here
                run.write_config(cfg)
            else:
                run = store.create(cfg, args.name)
        else:
            run = store.create(cfg, None)
    from .trainer import Trainer as _T  # noqa: F401 - keep import errors inside the run record

    recorder = RunRecorder(run)
    try:
        trainer = Trainer(cfg, run=run, callbacks=[recorder, ProgressPrinter(args.json or args.quiet)],
                          resume=args.resume)
    except Exception as exc:  # noqa: BLE001 - setup errors (data, model) are recorded in the run
        run.set_status(state="failed", error=f"{type(exc).__name__}: {exc}", ended=time.time())
        raise
    result = trainer.fit()
    out = {"run": run.name, "path": str(run.path), **result}
    if trainer.accelerator.is_main_process:
        _print(out, args.json, f"run {run.name}: {result['state']} at step {result['step']}, "
                               f"best validation accuracy {result.get('best_score')}")
    return 0 if result["state"] in ("completed", "stopped") else 1


def _load_for_eval(args):
    from .models import load_checkpoint

    store = RunStore(args.runs_dir)
    try:
        run = store.get(args.run)
        folder = run.best_checkpoint() if not args.checkpoint else run.checkpoint_dir(args.checkpoint)
        cfg = run.config()
    except RunError:
        from pathlib import Path

        if not (Path(args.run) / "config.json").is_file():
            raise
        run, folder, cfg = None, Path(args.run), C.Config()
    model, tok = load_checkpoint(folder)
    return run, cfg, model, tok


def cmd_eval(args) -> int:
    from pathlib import Path

    from .data import load_dataset, read_records, records_to_split
    from .trainer import evaluate_model

    run, cfg, model, tok = _load_for_eval(args)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if args.file:
        dcfg = C.DataConfig(text_column=args.text_column, label_column=args.label_column,
                            text_pair_column=args.text_pair_column or "")
        split, _ = records_to_split(read_records(Path(args.file)), dcfg, args.file, labels)
        where = args.file
    else:
        ds = load_dataset(cfg.data)
        if args.split not in ds.splits:
            raise RunError(f"split {args.split!r} not in the data; available: {', '.join(ds.splits)}")
        split, where = ds.splits[args.split], f"{cfg.data.source}:{args.split}"
    metrics = evaluate_model(model, tok, split, cfg.data.max_length, args.batch_size, len(labels))
    out = {"run": run.name if run else args.run, "data": where, **metrics}
    if run is not None:
        tag = Path(args.file).stem if args.file else args.split
        run.write_analysis(f"eval-{tag}", out)
    _print(out, args.json, f"{where}: accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  "
                           f"loss {metrics['loss']:.4f}  (n={metrics['n']})")
    return 0


def cmd_predict(args) -> int:
    from .models import predict_proba

    _, cfg, model, tok = _load_for_eval(args)
    texts = [t for t in args.texts if t.strip()]
    if not texts:
        raise RunError("give at least one non-empty sentence to classify")
    probs = predict_proba(model, tok, texts, max_length=cfg.data.max_length)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    rows = [{"text": t, "label": names[int(p.argmax())], "confidence": float(p.max()),
             "probabilities": {n: float(v) for n, v in zip(names, p)}} for t, p in zip(texts, probs)]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            print(f"{r['label']:>12}  {r['confidence']:.3f}  {r['text']}")
    return 0


def cmd_runs(args) -> int:
    rows = [r.summary() for r in RunStore(args.runs_dir).list()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no runs in {RunStore(args.runs_dir).root}")
    for r in rows:
        best = f"{r['best_score']:.4f}" if r["best_score"] is not None else "-"
        print(f"{r['name']:<36} {r['method']:<12} {r['state']:<12} step {r['step']}/{r['total_steps']}  best {best}")
    return 0


def cmd_stop(args) -> int:
    run = RunStore(args.runs_dir).get(args.run)
    run.request_stop()
    _print({"run": run.name, "stop_requested": True}, args.json, f"stop requested for {run.name}")
    return 0


def _print(obj, as_json: bool, text: str) -> None:
    print(json.dumps(obj, indent=1, default=str) if as_json else text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="uegr", description="UEGR Studio: robust fine-tuning of text classifiers.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("--runs-dir", default=None, help="runs folder (default: $UEGR_HOME or ./runs)")
        sp.add_argument("--json", action="store_true", help="print machine-readable JSON")

    t = sub.add_parser("train", help="train a classifier with UEGR or a baseline",
                       description="Train with a preset and/or a YAML/JSON config, plus --set overrides. "
                                   "Fields: " + "; ".join(f"{s}: {', '.join(f)}" for s, f in C.field_docs().items()))
    t.add_argument("--preset", choices=list(C.PRESETS), help="start from a preset")
    t.add_argument("--config", help="YAML or JSON file with sections data/model/method/optim/runtime")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override one field, e.g. --set method.k=4 (repeatable)")
    t.add_argument("--name", help="run name (folder under the runs dir); with --resume, the run to continue")
    t.add_argument("--resume", action="store_true", help="continue --name from its last checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    common(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a run on a split or a labelled file (e.g. adversarial examples)")
    e.add_argument("run", help="run name or folder, or a saved Hugging Face classifier folder")
    e.add_argument("--split", default="validation", help="validation, test or train (default validation)")
    e.add_argument("--file", help="labelled CSV/TSV/JSON/JSONL file instead of a split")
    e.add_argument("--text-column", default="text")
    e.add_argument("--text-pair-column", default="")
    e.add_argument("--label-column", default="label")
    e.add_argument("--checkpoint", choices=["best", "last"], help="which checkpoint (default best, else last)")
    e.add_argument("--batch-size", type=int, default=64)
    common(e)
    e.set_defaults(func=cmd_eval)

    pr = sub.add_parser("predict", help="classify sentences with a trained run")
    pr.add_argument("run")
    pr.add_argument("texts", nargs="+", help="one or more sentences")
    pr.add_argument("--checkpoint", choices=["best", "last"])
    common(pr)
    pr.set_defaults(func=cmd_predict)

    r = sub.add_parser("runs", help="list runs")
    common(r)
    r.set_defaults(func=cmd_runs)

    s = sub.add_parser("stop", help="ask a running run to stop (it saves a checkpoint first)")
    s.add_argument("run")
    common(s)
    s.set_defaults(func=cmd_stop)

    from .attacks.cli import add_attack_parser
    from .landscape import add_landscape_parser
    from .sweep.cli import add_sweep_parser

    add_attack_parser(sub)
    add_landscape_parser(sub)
    add_sweep_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .data import DataError
    from .models import ModelLoadError

    try:
        return args.func(args)
    except (C.ConfigError, DataError, ModelLoadError, RunError, ValueError, FileNotFoundError) as exc:
        print(f"uegr {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"uegr {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
