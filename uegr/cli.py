"""`uegr` command line: thin wrappers that parse, call the library and print (JSON with --json)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from . import config as C
from . import jobs
from .callbacks import Callback
from .cli_errors import os_error_message, run_command  # noqa: F401 - os_error_message: public here before
from .runs import NAME_RE, RunError, RunStore

EXAMPLES = """examples:
  uegr train --preset quick-demo
  uegr train --preset tiny --set method.k=2 --set optim.max_steps=20 --name my-run
  uegr train --config my.yaml --set data.source=sst2 --set data.max_train_examples=5000
  uegr train --name my-run --resume
  uegr eval my-run --split test          uegr eval my-run --file adversarial.csv
  uegr predict my-run "a gorgeous, witty film"
  uegr export my-run ./my-model          uegr export my-run ./my-model --checkpoint last --format onnx
  uegr runs --json
  uegr report my-run other-run -o report.html
"""


class ProgressPrinter(Callback):
    """A tqdm bar on stderr for training, plus eval lines."""

    def __init__(self, quiet: bool = False, job: bool = False):
        self.quiet = quiet
        self.job = job  # also write the background job's progress.json (uegr/jobs.py)
        self.bar = None

    def on_train_start(self, state, control):
        if self.quiet:
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(total=state.total_steps, initial=state.step, desc=state.cfg.method.name,
                        unit="step", file=sys.stderr, dynamic_ncols=True)

    def on_log(self, state, control, record):
        if self.job:
            jobs.report(record["step"], state.total_steps, f"step {record['step']}, loss {record.get('loss', 0):.4f}")
        if self.bar is not None:
            self.bar.update(record["step"] - self.bar.n)
            self.bar.set_postfix(loss=f"{record.get('loss', 0):.4f}", ex_s=f"{record['examples_per_s']:.1f}")

    def on_evaluate(self, state, control, metrics):
        if self.bar is not None:
            self.bar.write(f"step {metrics['step']}: {metrics['split']} accuracy {metrics['accuracy']:.4f} "
                           f"loss {metrics['loss']:.4f}")

    def on_train_end(self, state, control, outcome, error):
        if self.bar is not None:
            self.bar.close()


# Settings a resume may not change: they change the model, the data or the order it is seen in, so the
# checkpoint would not match (everything else, e.g. optim.max_steps or runtime.*, may change).
RESUME_FIXED = ("data.", "model.", "method.name", "optim.seed", "optim.batch_size")
_STARTED = float(os.environ.get("UEGR_LAUNCHED") or time.time())  # a STOP older than this is stale


def _resume_changes(old: C.Config, new: C.Config) -> list[str]:
    a, b = old.to_dict(), new.to_dict()
    return [f"{sec}.{k}" for sec in b for k in b[sec] if a.get(sec, {}).get(k) != b[sec][k]]


def cmd_train(args) -> int:
    store = RunStore(args.runs_dir)
    if args.restart and not args.resume:
        raise RunError("--restart goes with --resume: uegr train --name RUN --resume --restart")
    if args.resume:
        if not args.name:
            raise RunError("--resume needs --name of the run to continue")
        run = store.get(args.name)
        with run.lock():  # before anything is written; refused while another process has the run
            return _resume(args, run)
    cfg = C.build_config(args.preset, args.config, args.set)  # invalid settings: refused before any write
    _precheck(cfg)
    if _secondary_rank() and args.name:  # data-parallel rank > 0: rank 0 creates the run and writes for all
        return _train(args, _wait_for_run(store, args.name), cfg, resume=False)
    if not args.name:
        loaded = _load_inputs(cfg)
        run = store.create(cfg, None)
        with run.lock():
            return _train(args, run, cfg, resume=False, loaded=loaded)
    with store.lock(args.name):  # taken before the folder exists: two starts of one name cannot both train
        try:
            run = store.get(args.name)
        except RunError:
            run = None
        if run is None:
            pass  # created below, once its data and model have loaded
        elif run.raw_status().get("state") == "queued" and not run.has_checkpoint() or _stopped_while_queued(run):
            pass  # created (queued) by the app, started here
        else:
            raise RunError(f"a run named {args.name!r} already exists in {store.root} "
                           f"({run.status().get('state')}); choose another name, or continue it with "
                           f"`uegr train --name {args.name} --resume`")
        if run is not None and run.stop_requested():  # `uegr stop` (or the app's Stop) while queued
            return _stopped_before_start(args, run)
        loaded = _load_inputs(cfg) if run is None else None
        if run is None:
            run = store.create(cfg, args.name)
        run.write_config(cfg)
        return _train(args, run, cfg, resume=False, loaded=loaded)


def _secondary_rank() -> bool:
    return int(os.environ.get("RANK") or 0) > 0


def _wait_for_run(store, name: str, timeout: float = 120.0):
    end = time.time() + timeout
    while True:
        try:
            return store.get(name)
        except RunError:
            if time.time() > end:
                raise
            time.sleep(0.2)


def _stopped_while_queued(run) -> bool:
    st = run.raw_status()
    return st.get("state") == "stopped" and not st.get("started") and run.stop_requested()


def _stopped_before_start(args, run) -> int:
    st = run.set_status(state="stopped", error=None, ended=time.time(),
                        note="stopped before training started (a stop was requested)")
    run.clear_stop()
    _print({"run": run.name, "path": str(run.path), "state": "stopped", "step": st.get("step", 0)}, args.json,
           f"run {run.name}: stopped before training started (a stop was requested)")
    return 0


def _resume(args, run) -> int:
    """Continue a run (lock held). Every check happens before the first write: a refused or failed resume
    leaves config.json, status.json, metrics and checkpoints exactly as they were."""
    old = run.config()
    cfg = old.copy()
    if args.set:
        C.apply_overrides(cfg, args.set)
        C.validate(cfg)
        fixed = [k for k in _resume_changes(old, cfg) if k.startswith(RESUME_FIXED)]
        if fixed:
            raise RunError(f"--set {fixed[0]} cannot change when resuming run {run.name!r}: it changes the "
                           "model or the data, so the checkpoint would not fit; start a new run instead, e.g. "
                           f"uegr train --config {run.path / 'config.json'} --set {fixed[0]}=... --name "
                           f"{run.name}-2")
    if run.stop_requested(since=_STARTED):
        return _stopped_before_start(args, run)
    resume = run.resume_checkpoint() is not None and not args.restart
    trainer = _make_trainer(args, run, cfg, resume)  # loads the checkpoint; on failure nothing was written
    run.clear_stop()  # a request older than this process was for a session that is over
    if not resume:
        print(f"run {run.name}: {'--restart' if args.restart else 'no checkpoint to resume from'}: "
              "training it again from step 0 (earlier metrics move to metrics.discarded.jsonl)", file=sys.stderr)
    if cfg.to_dict() != old.to_dict():
        run.write_config(cfg)
    return _fit(args, run, trainer)


def _make_trainer(args, run, cfg, resume: bool, loaded: tuple | None = None):
    from .trainer import RunRecorder, Trainer

    dataset, model = loaded or (None, None)
    return Trainer(cfg, run=run, callbacks=[RunRecorder(run), ProgressPrinter(args.json or args.quiet, job=True)],
                   resume=resume, dataset=dataset, model=model)


def _load_inputs(cfg) -> tuple:
    """(dataset, (model, tokenizer)) of a new run, loaded before its folder is made: a bad data file or an
    unknown model is refused with nothing written. Both loads use their own seeded generators, so training
    is the same as when the Trainer loads them."""
    from .data import load_dataset
    from .models import load_model
    from .trainer import attn_implementation_for

    dataset = load_dataset(cfg.data)
    model = load_model(cfg.model, dataset.num_labels, dataset.label_names, attn_implementation_for(cfg),
                       seed=cfg.optim.seed)
    return dataset, model


def _train(args, run, cfg, resume: bool, loaded: tuple | None = None) -> int:
    import socket

    if not _secondary_rank():
        run.set_status(pid=os.getpid(), host=socket.gethostname())  # a kill during setup is then seen as such
    try:
        trainer = _make_trainer(args, run, cfg, resume, loaded)
    except Exception as exc:  # noqa: BLE001 - setup errors (data, model) of a new run are recorded in it
        run.set_status(state="failed", error=f"{type(exc).__name__}: {exc}", ended=time.time())
        raise
    return _fit(args, run, trainer)


def _fit(args, run, trainer) -> int:
    result = trainer.fit()
    if result["state"] == "stopped":
        jobs.stopped()  # e.g. `uegr stop RUN`: the job is stopped too, not completed
    out = {"run": run.name, "path": str(run.path), **result}
    if trainer.accelerator.is_main_process:
        _print(out, args.json, f"run {run.name}: {result['state']} at step {result['step']}, "
                               f"best validation accuracy {result.get('best_score')}")
    return 0 if result["state"] in ("completed", "stopped") else 1


def _precheck(cfg) -> None:
    """Refuse what the config alone shows to be unusable, before a run folder is made for it."""
    from .data import check_settings_used
    from .models import check_max_length, config_position_limit

    check_settings_used(cfg.data)
    check_max_length(cfg.data.max_length, config_position_limit(cfg.model), cfg.model.name)


def _load_for_eval(args):
    from pathlib import Path

    from .models import ModelLoadError, load_checkpoint
    from .runs import safetensors_problem

    store = RunStore(args.runs_dir)
    given = Path(args.run)
    is_path = not NAME_RE.match(args.run) or not (store.root / args.run).is_dir()
    if is_path and (given / "status.json").is_file():
        raise RunError(f"{args.run} is a run folder: give the run's name and its runs folder, e.g. "
                       f"`{given.name} --runs-dir {given.parent}`")
    if is_path and (given / "config.json").is_file():
        run, folder, cfg = None, given, C.Config()  # a saved classifier folder, read only
    else:
        run = store.get(args.run)
        folder = run.best_checkpoint() if not args.checkpoint else run.checkpoint_dir(args.checkpoint)
        if not (folder / "config.json").is_file():
            raise RunError(f"run {run.name!r} has no {args.checkpoint} checkpoint ({folder})")
        cfg = run.config()
    problem = safetensors_problem(folder / "model.safetensors") if (folder / "model.safetensors").exists() else None
    try:
        if problem:
            raise ValueError(problem)
        model, tok = load_checkpoint(folder)
    except (ModelLoadError, RunError):
        raise
    except Exception as exc:  # noqa: BLE001 - HF/safetensors errors on damaged files
        raise RunError(f"checkpoint {folder} cannot be loaded ({str(exc)[:200]}); "
                       + ("try --checkpoint last or best, or " if run else "")
                       + "restore the files, or train the run again") from None
    return run, cfg, model, tok, folder


def cmd_eval(args) -> int:
    from pathlib import Path

    from .data import load_dataset, read_records, records_to_split
    from .trainer import evaluate_model

    if not 1 <= args.batch_size <= 8192:
        raise RunError(f"--batch-size={args.batch_size} is out of range: use 1 to 8192")
    run, cfg, model, tok, folder = _load_for_eval(args)
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
    out = {"run": run.name if run else args.run, "data": where, "checkpoint": str(folder), **metrics}
    if run is not None:
        tag = Path(args.file).stem if args.file else args.split
        run.write_analysis(f"eval-{tag}", out)
    _print(out, args.json, f"{where}: accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  "
                           f"loss {metrics['loss']:.4f}  (n={metrics['n']})")
    return 0


def cmd_predict(args) -> int:
    from .models import predict_proba

    _, cfg, model, tok, _ = _load_for_eval(args)
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
    rows = [r.summary(check_checkpoints=True) for r in RunStore(args.runs_dir).list()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no runs in {RunStore(args.runs_dir).root}")
    for r in rows:
        best = f"{r['best_score']:.4f}" if r["best_score"] is not None else "-"
        line = f"{r['name']:<36} {r['method']:<12} {r['state']:<12} step {r['step']}/{r['total_steps']}  best {best}"
        if r["state"] == "damaged":
            line += f"  ({r['error']})"
        print(line)
    return 0


def cmd_stop(args) -> int:
    run = RunStore(args.runs_dir).get(args.run)
    before = run.status()
    if before.get("state") == "damaged":
        raise RunError(f"cannot stop run {run.name!r}: {before.get('error')}")
    state = run.request_stop()
    if state == "running":
        text, asked = f"stop requested for {run.name}: it saves a checkpoint and stops after this step", True
    elif state in ("queued", "stopped") and before.get("state") == "queued":
        text, asked = f"stop requested for {run.name}: it was queued and will not train", True
    else:
        text, asked = f"run {run.name} is not running ({state}); nothing to stop", False
    _print({"run": run.name, "stop_requested": asked, "state": state}, args.json, text)
    return 0


def cmd_export(args) -> int:
    from .export import export

    out = export(args.run, args.out, args.checkpoint, args.format, args.runs_dir)
    extra = ""
    if out.get("onnx"):
        o = out["onnx"]
        extra = (f"; model.onnx max |dp| {o['max_abs_prob_diff']:.1e}, {o['onnxruntime_ms']} ms (onnxruntime) vs "
                 f"{o['torch_ms']} ms (PyTorch)")
    _print(out, args.json, f"exported {out['source']} -> {out['out']} ({out['pooling']} pooling"
                           f"{', upgraded from the pre-portable format' if out['upgraded_legacy'] else ''}){extra}")
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
    t.add_argument("--resume", action="store_true", help="continue --name from its last checkpoint (a run with "
                   "no checkpoint yet trains again from step 0)")
    t.add_argument("--restart", action="store_true", help="with --resume: train the run again from step 0, e.g. "
                   "when its checkpoint is damaged (earlier metrics are kept in metrics.discarded.jsonl)")
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

    x = sub.add_parser("export", help="write a run's checkpoint as a portable folder with a model card",
                       description="Copies best (default) or last into OUT: safetensors, tokenizer, label names, "
                                   "README.md model card (and modeling_uegr.py for mean pooling). Loads with "
                                   "transformers' AutoModelForSequenceClassification / pipeline. Also upgrades "
                                   "checkpoints written before portable checkpoints.")
    x.add_argument("run", help="run name or folder, or a checkpoint folder")
    x.add_argument("out", help="new folder to write (must not exist or be empty)")
    x.add_argument("--checkpoint", choices=["best", "last"], help="which checkpoint (default best, else last)")
    x.add_argument("--format", choices=["safetensors", "onnx"], default="safetensors",
                   help="onnx also writes model.onnx and measures parity and latency (needs onnxruntime)")
    common(x)
    x.set_defaults(func=cmd_export)

    r = sub.add_parser("runs", help="list runs")
    common(r)
    r.set_defaults(func=cmd_runs)

    s = sub.add_parser("stop", help="ask a running run to stop (it saves a checkpoint first)")
    s.add_argument("run")
    common(s)
    s.set_defaults(func=cmd_stop)

    from .attacks.cli import add_attack_parser
    from .landscape import add_landscape_parser
    from .report import add_report_parser
    from .sweep.cli import add_sweep_parser

    add_attack_parser(sub)
    add_landscape_parser(sub)
    add_report_parser(sub)
    add_sweep_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    jobs.claim()  # started as a background job: record how it ends (uegr/jobs.py)
    code = 1
    try:
        args = build_parser().parse_args(argv)
        code = run_command(f"uegr {args.command}", args.func, args)
        return code
    except SystemExit as exc:  # argparse refused the arguments
        code = exc.code if isinstance(exc.code, int) else 1
        raise
    finally:
        jobs.finish(code)


if __name__ == "__main__":
    sys.exit(main())
