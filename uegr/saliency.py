"""Stage 2: parameter saliency, update masks and the masked optimizer step.

`SelectiveUpdater` owns per-element saliency for the eligible tensors (the encoder blocks), turns it
into masks (top-k or RoAST-style Bernoulli, global or per tensor), and applies them to gradients.
`MaskedAdamW` additionally freezes masked elements' moments and weight decay (ROSE's freeze_moments).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import MethodConfig
from .models import encoder_layer_prefixes, layer_index, matrix_kind


def eligible_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Encoder-block tensors; embeddings, pooler, head and final LayerNorm are always updated."""
    prefixes = encoder_layer_prefixes(model)
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad and layer_index(n, prefixes) is not None]


def topk_mask_global(scores: list[torch.Tensor], keep_ratio: float) -> list[torch.Tensor]:
    """Keep exactly round(keep_ratio * total) elements with the highest score across all tensors."""
    flat = torch.cat([s.flatten() for s in scores])
    k = max(1, int(round(keep_ratio * flat.numel())))
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[torch.topk(flat, k, sorted=False).indices] = True
    out, start = [], 0
    for s in scores:
        out.append(keep[start:start + s.numel()].view_as(s))
        start += s.numel()
    return out


def topk_mask_tensor(score: torch.Tensor, keep_ratio: float) -> torch.Tensor:
    k = max(1, int(round(keep_ratio * score.numel())))
    keep = torch.zeros(score.numel(), dtype=torch.bool, device=score.device)
    keep[torch.topk(score.flatten(), k, sorted=False).indices] = True
    return keep.view_as(score)


def rank01(values: torch.Tensor) -> torch.Tensor:
    """Normalised rank in [0, 1] (0 = smallest)."""
    flat = values.flatten()
    ranks = torch.empty_like(flat, dtype=torch.float32)
    ranks[torch.argsort(flat)] = torch.arange(flat.numel(), dtype=torch.float32, device=flat.device)
    return (ranks / max(flat.numel() - 1, 1)).view_as(values)


def bernoulli_probs(scores: list[torch.Tensor], alpha: float, beta: float, scope: str) -> list[torch.Tensor]:
    """RoAST: p = sigmoid(2 beta (rank - alpha)); high-saliency elements are kept with high probability."""
    if scope == "global":
        sizes = [s.numel() for s in scores]
        r = rank01(torch.cat([s.flatten() for s in scores])).split(sizes)
        ranks = [x.view_as(s) for x, s in zip(r, scores)]
    else:
        ranks = [rank01(s) for s in scores]
    return [torch.sigmoid(2 * beta * (r - alpha)).clamp_min(1e-4) for r in ranks]


class SelectiveUpdater:
    def __init__(self, model: nn.Module, cfg: MethodConfig, seed: int = 0, fixed: bool = False):
        self.cfg = cfg
        self.seed = seed
        self.fixed = fixed  # CHILD-TUNING_D: the mask is computed once (set_fixed_mask) and never refreshed
        self.named = eligible_parameters(model)
        self.prefixes = encoder_layer_prefixes(model)
        self.saliency: list[torch.Tensor | None] = [None] * len(self.named)
        self._masks: list[torch.Tensor] | None = None  # bool (topk) or last sampled (bernoulli)
        self._grad_masks: list[torch.Tensor] | None = None
        self._kept_counts: list[int] | None = None  # per tensor, counted once per mask (one device sync)
        self.probs: list[torch.Tensor] | None = None  # bernoulli keep probabilities
        self.refreshes = 0
        # Per tensor (intersection, union) of kept elements between the last two refreshes; None before
        # the second refresh. Reported in snapshots as iou_prev (exact, not from the downsampled maps).
        self.overlap_prev: list[tuple[int, int]] | None = None

    @property
    def masks(self) -> list[torch.Tensor] | None:
        return self._masks

    @masks.setter
    def masks(self, value: list[torch.Tensor] | None) -> None:
        self._masks = value
        self._grad_masks = None
        self._kept_counts = None

    # ------------------------------------------------------------ saliency
    def accumulate(self) -> None:
        """Fold the current gradients into the saliency EMA (call after backward, before masking).

        One foreach kernel per operation over all tensors: a per-tensor Python loop costs more than
        the arithmetic on CPU."""
        d = self.cfg.saliency_decay
        idx = [i for i, (_, p) in enumerate(self.named) if p.grad is not None]
        if not idx:
            return
        grads = [self.named[i][1].grad.detach().float() for i in idx]
        if self.cfg.saliency == "fisher":
            scores = torch._foreach_mul(grads, grads)
        elif self.cfg.saliency == "taylor":
            scores = torch._foreach_mul(grads, [self.named[i][1].detach().float() for i in idx])
            torch._foreach_abs_(scores)
        else:
            scores = torch._foreach_abs(grads)
        ema, new = [], []
        for i, s in zip(idx, scores):
            if self.saliency[i] is None:
                self.saliency[i] = s
            else:
                ema.append(self.saliency[i])
                new.append(s)
        if ema:
            torch._foreach_lerp_(ema, new, 1 - d)  # d * ema + (1 - d) * new

    def due(self, step: int) -> bool:
        cfg = self.cfg
        if self.fixed or step < cfg.mask_warmup:
            return False
        if cfg.refresh_every == 0:
            return self.masks is None and self.probs is None
        return (step - cfg.mask_warmup) % cfg.refresh_every == 0

    def refresh(self) -> None:
        scores = [s if s is not None else torch.zeros_like(p, dtype=torch.float32)
                  for s, (_, p) in zip(self.saliency, self.named)]
        self.set_mask_from_scores(scores)

    def set_mask_from_scores(self, scores: list[torch.Tensor]) -> None:
        cfg = self.cfg
        previous = self.reported_masks()
        if cfg.mask_rule == "bernoulli":
            self.probs = bernoulli_probs(scores, cfg.bernoulli_alpha, cfg.bernoulli_beta, cfg.mask_scope)
            self.masks = None
        elif cfg.mask_scope == "global":
            self.masks = topk_mask_global(scores, cfg.keep_ratio)
        else:
            self.masks = [topk_mask_tensor(s, cfg.keep_ratio) for s in scores]
        self.overlap_prev = self.overlap_with(previous) if previous is not None else None
        self.refreshes += 1

    def reported_masks(self) -> list[torch.Tensor] | None:
        """The masks snapshots report: top-k masks, or keep probability > 0.5 under the Bernoulli rule."""
        if self.probs is not None:
            return [pr > 0.5 for pr in self.probs]
        return self.masks

    def overlap_with(self, previous_masks: list[torch.Tensor]) -> list[tuple[int, int]]:
        """Per tensor (intersection, union) element counts of kept elements, current vs previous masks."""
        current = self.reported_masks()
        if current is None:
            return []
        return [(int((a & b).sum()), int((a | b).sum())) for a, b in zip(current, previous_masks)]

    # ------------------------------------------------------------ masking
    def apply(self, step: int) -> None:
        """Zero (topk) or resample-and-rescale (bernoulli) the gradients of the eligible tensors."""
        if self.probs is not None:
            # Same generator seed on every rank, so data-parallel ranks sample identical masks.
            gen = torch.Generator(device=self.probs[0].device).manual_seed(self.seed * 7919 + step)
            self.masks = [torch.rand(pr.shape, generator=gen, device=pr.device) < pr for pr in self.probs]
            for (_, p), m, pr in zip(self.named, self.masks, self.probs):
                if p.grad is not None:
                    p.grad.mul_(m.to(p.grad.dtype) / pr.to(p.grad.dtype))
        elif self.masks is not None:
            pairs = [(p.grad, m) for (_, p), m in zip(self.named, self.gradient_masks()) if p.grad is not None]
            if pairs:
                grads, masks = zip(*pairs)
                torch._foreach_mul_(list(grads), list(masks))

    def gradient_masks(self) -> list[torch.Tensor]:
        """The top-k masks in the gradients' dtype, converted once per refresh rather than every step."""
        dtype = next((p.grad.dtype for _, p in self.named if p.grad is not None), torch.float32)
        if self._grad_masks is None or self._grad_masks[0].dtype != dtype:
            self._grad_masks = [m.to(dtype) for m in self.masks]
        return self._grad_masks

    def step(self, step: int) -> bool:
        """accumulate -> maybe refresh -> apply. Returns True when the mask was refreshed."""
        if not self.fixed:
            self.accumulate()
        refreshed = self.due(step)
        if refreshed:
            self.refresh()
        self.apply(step)
        return refreshed

    def active_masks(self) -> dict[int, torch.Tensor]:
        """id(param) -> bool mask, for MaskedAdamW."""
        if self.masks is None:
            return {}
        return {id(p): m for (_, p), m in zip(self.named, self.masks)}

    # ------------------------------------------------------------ reporting
    def kept_counts(self) -> list[int]:
        if self._kept_counts is None:
            self._kept_counts = torch.stack([m.sum() for m in self.masks]).tolist()
        return self._kept_counts

    def kept_per_layer(self) -> dict[str, float]:
        if self.masks is None:
            return {}
        kept: dict[int, list[float]] = {}
        for (n, _), m, count in zip(self.named, self.masks, self.kept_counts()):
            li = layer_index(n, self.prefixes)
            acc = kept.setdefault(li, [0.0, 0.0])
            acc[0] += count
            acc[1] += m.numel()
        return {f"kept_l{li}": v[0] / v[1] for li, v in sorted(kept.items())}

    def kept_fraction(self) -> float:
        if self.masks is None:
            return 1.0
        return sum(self.kept_counts()) / sum(m.numel() for m in self.masks)

    def snapshot(self, max_side: int = 48) -> tuple[list[dict], dict[str, torch.Tensor]]:
        """Per-tensor summaries + downsampled maps (kept fraction, saliency) per weight matrix."""
        masks = self.masks
        if masks is None and self.probs is not None:
            masks = [pr > 0.5 for pr in self.probs]
        total_mass = sum(float(s.sum()) for s in self.saliency if s is not None) or 1.0
        rows, maps = [], {}
        for i, (n, p) in enumerate(self.named):
            s = self.saliency[i] if self.saliency[i] is not None else torch.zeros_like(p, dtype=torch.float32)
            m = masks[i] if masks is not None else torch.ones_like(p, dtype=torch.bool)
            rows.append({"name": n, "layer": layer_index(n, self.prefixes), "kind": matrix_kind(n),
                         "numel": p.numel(), "kept": int(m.sum()), "kept_fraction": float(m.float().mean()),
                         "saliency_mass": float(s.sum()) / total_mass, "saliency_mean": float(s.mean())})
            if self.overlap_prev:  # exact IoU with the previous refresh's mask (1.0 when both keep nothing)
                inter, union = self.overlap_prev[i]
                rows[-1].update(iou_prev=inter / union if union else 1.0, inter_prev=inter, union_prev=union)
            if p.dim() == 2:
                maps[f"mask/{n}"] = downsample(m.float(), max_side)
                maps[f"saliency/{n}"] = downsample(s, max_side)
        return rows, maps

    # ------------------------------------------------------------ resume
    def state_dict(self) -> dict:
        return {"saliency": self.saliency, "masks": self.masks, "probs": self.probs, "refreshes": self.refreshes}

    def load_state_dict(self, state: dict) -> None:
        self.saliency = state["saliency"]
        self.masks = state["masks"]
        self.probs = state["probs"]
        self.refreshes = state["refreshes"]


def downsample(x: torch.Tensor, max_side: int) -> torch.Tensor:
    """Average-pool a matrix to at most max_side x max_side cells (exact means of blocks)."""
    x = x.detach().float().cpu()
    rows, cols = x.shape
    fr, fc = math.ceil(rows / max_side), math.ceil(cols / max_side)
    if fr == 1 and fc == 1:
        return x.clone()
    return torch.nn.functional.adaptive_avg_pool2d(x[None, None], (math.ceil(rows / fr), math.ceil(cols / fc)))[0, 0]


class MaskedAdamW(torch.optim.Optimizer):
    """AdamW whose masked-out elements are exactly frozen: no update, no weight decay, no moment drift.

    `masks` maps id(param) -> bool tensor (True = may change); params without a mask update normally.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
        self.masks: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["step"] = torch.zeros((), dtype=torch.float32)
                    st["exp_avg"] = torch.zeros_like(p)
                    st["exp_avg_sq"] = torch.zeros_like(p)
                st["step"] += 1
                t = float(st["step"])
                g = p.grad
                m_new = st["exp_avg"] * b1 + g * (1 - b1)
                v_new = st["exp_avg_sq"] * b2 + g * g * (1 - b2)
                denom = (v_new / (1 - b2 ** t)).sqrt() + group["eps"]
                update = (m_new / (1 - b1 ** t)) / denom + group["weight_decay"] * p
                mask = self.masks.get(id(p))
                if mask is None:
                    st["exp_avg"], st["exp_avg_sq"] = m_new, v_new
                    p.sub_(group["lr"] * update)
                else:
                    st["exp_avg"] = torch.where(mask, m_new, st["exp_avg"])
                    st["exp_avg_sq"] = torch.where(mask, v_new, st["exp_avg_sq"])
                    p.sub_(group["lr"] * update * mask)
        return None
