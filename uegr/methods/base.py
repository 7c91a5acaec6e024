"""What every training method answers: run one batch (forwards and backwards), report named loss parts."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import MethodConfig
from ..models import classification_loss  # noqa: F401 - the methods' task loss, shared with evaluation


@dataclass
class StepContext:
    model: nn.Module  # what to call forward on (may be DDP-wrapped)
    raw_model: nn.Module  # the unwrapped model, for hooks and side passes that must not sync
    backward: Callable[..., None]  # accelerator.backward
    step: int = 0
    progress: float = 0.0  # fraction of training done, 0..1
    extras: dict = field(default_factory=dict)


def as_floats(parts: dict) -> dict[str, float]:
    """Loss parts as plain floats (methods may return 0-d tensors to avoid mid-step device syncs)."""
    return {k: float(v) for k, v in parts.items()}


def as_tuple(x):
    """Lists back to tuples, recursively: a Python RNG state after a JSON or torch round trip."""
    return tuple(as_tuple(v) for v in x) if isinstance(x, list | tuple) else x


def split_batch(batch: dict) -> tuple[dict, torch.Tensor]:
    return {k: v for k, v in batch.items() if k != "labels"}, batch["labels"]


def clean_pass(ctx: StepContext, inputs: dict, labels: torch.Tensor, retain_graph: bool = False):
    """Forward + backward on the clean batch; returns (logits, loss, dL/de at the embedding output).

    The embedding gradient comes for free from this backward: the one-step adversaries use it."""
    from .adversary import capture_embeddings

    with capture_embeddings(ctx.raw_model) as cap:
        logits = ctx.model(**inputs).logits
    loss = classification_loss(logits, labels)
    ctx.backward(loss, retain_graph=retain_graph)
    return logits, loss, cap.grad


def attention_mask_of(inputs: dict) -> torch.Tensor:
    return inputs.get("attention_mask", torch.ones_like(inputs["input_ids"]))


class Method:
    """Base class. Subclasses implement `step`; the trainer owns the optimizer and selective update."""

    name = "base"
    summary = ""  # one line shown beside the method picker
    # The mask the trainer applies: None (update everything), or "dynamic" (saliency refreshed during
    # training, UEGR and RoAST) or "fixed" (computed once before training, CHILD-TUNING_D).
    mask_mode: str | None = None
    updater_overrides: dict = {}  # method-specific saliency/mask settings (RoAST: Bernoulli)

    def __init__(self, cfg: MethodConfig, seed: int = 0):
        self.cfg = cfg
        self.seed = seed

    # Methods whose dropout rates vary per pass install per-block attention-probability dropout, which
    # needs the eager attention path (sdpa fuses dropout into one kernel).
    varies_attention_dropout = False

    @classmethod
    def attention_implementation(cls, cfg: MethodConfig) -> str:
        """The attention implementation this method needs for `cfg` (called before the model is loaded)."""
        return "eager" if cls.varies_attention_dropout and "attention" in cfg.dropout_targets else "sdpa"

    def prepare(self, model: nn.Module) -> None:
        """Called once with the raw model before training (e.g. to install block dropout)."""

    def data_pass_batches(self) -> int | None:
        """Training batches (in data order) the method reads once before training: 0 = none (the default),
        None = one whole epoch. They are given to `data_pass`."""
        return 0

    def data_pass(self, model: nn.Module, updater, batches: Iterable[dict]) -> bool:
        """A pass over training batches before the first step (CHILD-TUNING_D: the Fisher mask). `updater`
        is the trainer's SelectiveUpdater or None; returns True when it set the update mask."""
        return False

    def step(self, batch: dict, ctx: StepContext) -> dict[str, float | torch.Tensor]:
        """Forwards and backwards for one batch; named loss parts as floats or detached 0-d tensors."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
