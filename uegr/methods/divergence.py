"""KL, symmetric KL and the generalised Jensen-Shannon divergence, always in float32."""

from __future__ import annotations

import torch


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy over the last dim (nats); 0 log 0 = 0."""
    p = p.float()
    return -(p * torch.log(p.clamp_min(1e-30))).sum(-1)


def kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) over the last dim, per row."""
    p, q = p.float(), q.float()
    return (p * (torch.log(p.clamp_min(1e-30)) - torch.log(q.clamp_min(1e-30)))).sum(-1)


def symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Batch mean of KL(a||b) + KL(b||a), as in R-Drop (its loss uses half of this sum per side)."""
    pa, pb = logits_a.float().softmax(-1), logits_b.float().softmax(-1)
    return (kl(pa, pb) + kl(pb, pa)).mean()


def js_divergence(probs: torch.Tensor) -> torch.Tensor:
    """Generalised JS among K distributions: probs [K, B, C] -> batch mean of H(M) - mean_k H(P_k).

    Equals the mean over members of KL(P_k || M), is 0 for identical members and at most log K.
    """
    probs = probs.float()
    mixture = probs.mean(0)
    return (entropy(mixture) - entropy(probs).mean(0)).mean()
