"""Embedding-space perturbations: normalisation, projection, random start, and hooks that read the
gradient at the embedding output or add a perturbation to it."""

from __future__ import annotations

import contextlib

import torch

from ..models import embeddings_module


def _token_mask(attention_mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return attention_mask.to(like.dtype).unsqueeze(-1)


def normalise(g: torch.Tensor, attention_mask: torch.Tensor, norm: str) -> torch.Tensor:
    """Unit-norm direction: per token l_inf ('linf_token', RoAST) or per example l2 ('l2', FreeLB).
    Padding positions are zero."""
    g = g * _token_mask(attention_mask, g)
    if norm == "linf_token":
        return g / g.abs().amax(-1, keepdim=True).clamp_min(1e-12)
    flat = g.flatten(1).norm(dim=1).clamp_min(1e-12)
    return g / flat.view(-1, 1, 1)


def project(delta: torch.Tensor, eps: float, attention_mask: torch.Tensor, norm: str) -> torch.Tensor:
    """Project onto the eps-ball of the norm; zero on padding."""
    delta = delta * _token_mask(attention_mask, delta)
    if norm == "linf_token":
        return delta.clamp(-eps, eps)
    n = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    return delta * (eps / n).clamp(max=1.0).view(-1, 1, 1)


def random_start(shape, attention_mask: torch.Tensor, init: float, norm: str, generator=None,
                 device=None, dtype=torch.float32) -> torch.Tensor:
    """FreeLB-style random start: uniform noise scaled to magnitude `init` (per example l2, or per
    token l_inf)."""
    noise = torch.rand(shape, generator=generator, device=device, dtype=dtype) * 2 - 1
    noise = noise * _token_mask(attention_mask, noise)
    if norm == "l2":
        lengths = attention_mask.sum(1).to(dtype).clamp_min(1) * shape[-1]
        return noise * (init / lengths.sqrt()).view(-1, 1, 1)
    return noise * init


class EmbeddingCapture:
    """Keeps the embedding output of the next forward and its gradient after backward."""

    def __init__(self):
        self.output: torch.Tensor | None = None

    def hook(self, module, args, output):
        if output.requires_grad:
            output.retain_grad()
        self.output = output
        return output

    @property
    def grad(self) -> torch.Tensor | None:
        return None if self.output is None else self.output.grad


@contextlib.contextmanager
def capture_embeddings(model):
    cap = EmbeddingCapture()
    handle = embeddings_module(model).register_forward_hook(cap.hook)
    try:
        yield cap
    finally:
        handle.remove()


@contextlib.contextmanager
def add_to_embeddings(model, delta: torch.Tensor | None):
    """Within the block, every forward adds `delta` to the embedding output e = E(x)."""
    if delta is None:
        yield
        return

    def hook(module, args, output):
        return output + delta.to(output.dtype)

    handle = embeddings_module(model).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
