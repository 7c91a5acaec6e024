"""Per-block-rate dropout: one forward over a K-times repeated batch runs K sub-models, block k of
rows at rate p_k. Hidden, attention-probability and classifier dropout are replaced in place."""

from __future__ import annotations

import contextlib
import math
import random

import torch
from torch import nn
from torch.nn import functional as F

from .base import as_tuple


class DropoutState:
    """Shared by every BlockDropout of one model: the per-block rates of the current fused pass."""

    def __init__(self):
        self.rates: torch.Tensor | None = None
        self.targets: set[str] = {"hidden", "attention", "classifier"}
        self.record: list[torch.Tensor] | None = None  # tests: keep the uniform noise drawn
        self.replay: list[torch.Tensor] | None = None  # tests: reuse recorded noise


class BlockDropout(nn.Module):
    def __init__(self, p: float, kind: str, state: DropoutState):
        super().__init__()
        self.p = p
        self.kind = kind
        self.state = state

    def extra_repr(self) -> str:
        return f"p={self.p}, kind={self.kind}"

    def _noise(self, x: torch.Tensor) -> torch.Tensor:
        st = self.state
        if st.replay is not None:
            return st.replay.pop(0)
        u = torch.rand_like(x)
        if st.record is not None:
            st.record.append(u)
        return u

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        rates = self.state.rates
        if rates is None or self.kind not in self.state.targets:
            if self.state.record is None and self.state.replay is None:
                return F.dropout(x, self.p, True)
            rates_row = torch.full((x.shape[0],), self.p, device=x.device)
        else:
            k = rates.numel()
            if x.shape[0] % k:
                raise ValueError(f"batch of {x.shape[0]} rows is not {k} equal blocks")
            rates_row = rates.to(x.device).repeat_interleave(x.shape[0] // k)
        r = rates_row.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        keep = self._noise(x) >= r
        return x * keep / (1 - r).clamp_min(1e-6)


def _kind(name: str, base_prefix: str) -> str:
    if base_prefix and not name.startswith(base_prefix + "."):
        return "classifier"
    if name.endswith("attention.self.dropout") or name.endswith("attention.dropout"):
        return "attention"
    return "hidden"


def install_block_dropout(model: nn.Module) -> DropoutState:
    """Replace every nn.Dropout of `model` by a BlockDropout sharing one state (idempotent)."""
    existing = getattr(model, "_uegr_dropout_state", None)
    if existing is not None:
        return existing
    state = DropoutState()
    base_prefix = getattr(model, "base_model_prefix", "")
    if not hasattr(model, base_prefix):
        base_prefix = ""
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Dropout):
                full = f"{name}.{child_name}" if name else child_name
                setattr(module, child_name, BlockDropout(child.p, _kind(full, base_prefix), state))
    model._uegr_dropout_state = state
    return state


def dropout_modules(model: nn.Module) -> list[tuple[str, BlockDropout]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, BlockDropout)]


@contextlib.contextmanager
def block_rates(model: nn.Module, rates: torch.Tensor | None, targets=None):
    """Within the block, forwards run K sub-models at `rates` (one per block of rows)."""
    state = install_block_dropout(model)
    old_rates, old_targets = state.rates, state.targets
    state.rates = rates
    if targets is not None:
        state.targets = set(targets)
    try:
        yield state
    finally:
        state.rates, state.targets = old_rates, old_targets


class RateSampler:
    """Draws the K dropout rates of a step under one of four rules (uniform, grid, schedule, feedback)."""

    def __init__(self, k: int, p_min: float, p_max: float, rule: str, seed: int,
                 js_target: float = 0.05, feedback_step: float = 0.01):
        self.k, self.p_min, self.p_max, self.rule = k, p_min, p_max, rule
        self.js_target, self.feedback_step = js_target, feedback_step
        self.rng = random.Random(seed)
        self.center = (p_min + p_max) / 2  # feedback rule: where the range currently sits

    def sample(self, progress: float = 0.0) -> torch.Tensor:
        lo, hi, k = self.p_min, self.p_max, self.k
        if self.rule == "grid":
            rates = [(lo + hi) / 2] if k == 1 else [lo + (hi - lo) * i / (k - 1) for i in range(k)]
        elif self.rule == "schedule":
            top = lo + (hi - lo) * min(max(progress, 0.0), 1.0)
            rates = [self.rng.uniform(lo, top) for _ in range(k)]
        elif self.rule == "feedback":
            half = (hi - lo) / 2
            rates = [self.rng.uniform(self.center - half, self.center + half) for _ in range(k)]
        else:
            rates = [self.rng.uniform(lo, hi) for _ in range(k)]
        return torch.tensor([min(max(r, 0.0), 0.9) for r in rates])

    def feedback(self, js: float | torch.Tensor) -> None:
        """Move the range up when sub-models agree too much (JS below target), down otherwise.

        Only the feedback rule reads the value, so only it pays the device sync of a tensor's float()."""
        if self.rule != "feedback":
            return
        js = float(js)
        if math.isnan(js):
            return
        half = (self.p_max - self.p_min) / 2
        step = self.feedback_step if js < self.js_target else -self.feedback_step
        self.center = min(max(self.center + step, half), 0.9 - half)

    def state_dict(self) -> dict:
        return {"rng": self.rng.getstate(), "center": self.center}

    def load_state_dict(self, state: dict) -> None:
        self.rng.setstate(as_tuple(state["rng"]))
        self.center = state["center"]

