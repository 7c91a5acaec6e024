"""Loss-landscape flatness probes for any sequence classifier (see docs/uegr-method.md, flatness).

Every probe evaluates with dropout off (model.eval()), in float32, on a fixed list of batches made
once by `fixed_batches` (a seeded subset of a split, sorted by length so batches carry little padding):

- `slice_1d` / `slice_2d`: loss along random filter-normalised directions (Li et al., NeurIPS 2018);
- `interpolate`: loss on the straight line between two checkpoints of one architecture;
- `top_eigenvalues` / `hessian_trace`: PyHessian-style power iteration with deflation and Hutchinson
  (Rademacher) trace, both on exact Hessian-vector products by double backprop (`hvp`);
- `sam_sharpness` and `eps_sharpness` (Keskar et al. 2017).

The model may be any nn.Module whose forward(**inputs) returns an object with `.logits` (Hugging Face
classifiers) or a logits tensor; `loss_fn(model, batch) -> per-example losses` replaces the default
cross-entropy. Weights are perturbed in place and restored exactly from a saved copy (asserted).
`probe_run` wraps one probe into a JSON-serialisable record; `add_landscape_parser` / `cmd_landscape`
are the `uegr landscape` command.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

Batch = dict[str, torch.Tensor]
LossFn = Callable[[nn.Module, Batch], torch.Tensor]  # per-example losses, shape [B]
Progress = Callable[[int, int], None]
ShouldStop = Callable[[], bool]
ParamSpec = str | Sequence[str] | Callable[[str], bool] | None

KINDS = ("slice1d", "slice2d", "interp", "hessian", "sharpness")


class LandscapeError(ValueError):
    """A probe cannot run as asked; the message says why and what to do."""


class ProbeStopped(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised when `should_stop()` turned true; `.partial` holds what was computed so far."""

    def __init__(self, partial):
        super().__init__("probe stopped on request")
        self.partial = partial


# ---------------------------------------------------------------- batches and loss
def fixed_batches(split, tokenizer, n_examples: int = 256, batch_size: int = 32, max_length: int = 64,
                  seed: int = 0) -> list[Batch]:
    """A fixed, seeded subset of `split` (a data.Split), tokenised and batched once.

    The subset is `n_examples` indices drawn with random.Random(seed) (all examples when 0 or more than
    the split holds); examples are sorted by token length before batching so padding is minimal. The
    loss is a mean over examples, so the order does not change any result.
    """
    from .data import Encoded, make_collate

    n = len(split)
    if n == 0:
        raise LandscapeError("the split has no examples to probe the landscape on")
    idx = list(range(n))
    if n_examples and n_examples < n:
        idx = sorted(random.Random(seed).sample(idx, n_examples))
    sub = split.take(idx)
    enc = Encoded(sub, tokenizer, max_length)
    order = sorted(range(len(enc)), key=lambda i: (len(enc[i]["input_ids"]), i))
    collate = make_collate(tokenizer.pad_token_id or 0)
    return [collate([enc[i] for i in order[s:s + batch_size]]) for s in range(0, len(order), batch_size)]


def default_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Per-example float32 cross-entropy (MSE for one-output regression heads)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    out = model(**inputs)
    logits = (out.logits if hasattr(out, "logits") else out).float()
    labels = batch["labels"]
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.squeeze(-1), labels.float(), reduction="none")
    return F.cross_entropy(logits, labels, reduction="none")


def _device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _to(batches: Iterable[Batch], device: torch.device) -> list[Batch]:
    return [{k: v.to(device) for k, v in b.items()} for b in batches]


def _n_examples(batches: list[Batch]) -> int:
    return sum(int(b["labels"].shape[0]) for b in batches)


@contextmanager
def _eval_mode(model: nn.Module):
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def _check_float32(model: nn.Module) -> None:
    bad = {str(p.dtype) for p in model.parameters() if p.is_floating_point() and p.dtype != torch.float32}
    if bad:
        raise LandscapeError(f"landscape probes run in float32, but the model has {', '.join(sorted(bad))} "
                             "weights: call model.float() first")


def _loss_sum(model: nn.Module, batches: list[Batch], loss_fn: LossFn, device: torch.device) -> tuple[float, int]:
    total, count = 0.0, 0
    with torch.inference_mode():  # thread-local: each worker enters it
        for b in batches:
            b = {k: v.to(device) for k, v in b.items()}
            total += float(loss_fn(model, b).double().sum())
            count += int(b["labels"].shape[0])
    return total, count


@contextmanager
def _single_threaded_kernels():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def loss_on_batches(model: nn.Module, batches: list[Batch], loss_fn: LossFn | None = None,
                    workers: int = 0) -> float:
    """Mean loss over all examples of `batches` (dropout off, no gradients).

    On a CPU with the default loss, batches are shared among `workers` threads (0: one per torch
    thread), each running single-threaded kernels. Encoder matrices are small enough that this beats
    one pass of multi-threaded kernels by 10-15 % (bench/landscape_cost.py); a custom loss_fn, which
    may not be thread-safe, always runs in one pass."""
    device = _device(model)
    if loss_fn is not None or device.type != "cpu":
        workers = 1
    workers = min(workers or torch.get_num_threads(), len(batches))
    loss_fn = loss_fn or default_loss
    with _eval_mode(model):
        if workers <= 1:
            total, count = _loss_sum(model, batches, loss_fn, device)
        else:
            shares = [batches[i::workers] for i in range(workers)]  # batches are length-sorted: interleave
            with _single_threaded_kernels(), ThreadPoolExecutor(workers) as pool:
                parts = list(pool.map(lambda share: _loss_sum(model, share, loss_fn, device), shares))
            total, count = sum(p[0] for p in parts), sum(p[1] for p in parts)
    if count == 0:
        raise LandscapeError("no examples in the batches")
    return total / count


# ---------------------------------------------------------------- parameter selection and directions
def select_params(model: nn.Module, params: ParamSpec = None) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) pairs, sorted by name.

    params: None or "all" = every trainable parameter; "encoder" = the transformer blocks only;
    "no_embeddings" = everything but the embedding layer; a list of names; or a predicate on names.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if params is None or params == "all":
        keep = named
    elif params == "encoder":
        from .models import encoder_layer_prefixes

        prefixes = encoder_layer_prefixes(model)
        if not prefixes:
            raise LandscapeError("params='encoder': no transformer blocks found in this model; use 'all'")
        keep = [(n, p) for n, p in named if any(n.startswith(pre) for pre in prefixes)]
    elif params == "no_embeddings":
        keep = [(n, p) for n, p in named if "embeddings." not in n and not n.startswith("embeddings")]
    elif isinstance(params, str):
        raise LandscapeError(f"params={params!r}: use 'all', 'encoder', 'no_embeddings', a list of "
                             "parameter names or a predicate")
    elif callable(params):
        keep = [(n, p) for n, p in named if params(n)]
    else:
        wanted = list(params)
        have = dict(named)
        missing = [n for n in wanted if n not in have]
        if missing:
            raise LandscapeError(f"parameters not in the model (or frozen): {missing[:5]}")
        keep = [(n, have[n]) for n in wanted]
    if not keep:
        raise LandscapeError(f"params={params!r} selects no trainable parameter")
    return sorted(keep, key=lambda t: t[0])


def _name_seed(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"{int(seed)}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def random_direction(model: nn.Module, seed: int = 0, filter_normalize: bool = True, skip_1d: bool = True,
                     params: ParamSpec = None) -> dict[str, torch.Tensor]:
    """A random Gaussian direction over the selected parameters, one tensor per parameter name.

    Each tensor is drawn from its own torch.Generator seeded from (seed, parameter name), on the CPU,
    so every model of one architecture gets the same raw direction for a seed whatever its weights.
    filter_normalize (Li et al. 2018): each row (filter) of a weight matrix is rescaled to the norm of
    the weights' row. 1-D tensors (biases, LayerNorm) are zeroed when skip_1d, else set to the weights.
    """
    out: dict[str, torch.Tensor] = {}
    for name, p in select_params(model, params):
        gen = torch.Generator(device="cpu").manual_seed(_name_seed(seed, name))
        d = torch.randn(p.shape, generator=gen, dtype=torch.float32)
        w = p.detach().to("cpu", torch.float32)
        if p.dim() <= 1:
            d = torch.zeros_like(d) if skip_1d else w.clone()
        elif filter_normalize:
            rows, wrows = d.reshape(d.shape[0], -1), w.reshape(w.shape[0], -1)
            rows.mul_(wrows.norm(dim=1, keepdim=True) / (rows.norm(dim=1, keepdim=True) + 1e-10))
        out[name] = d.to(p.device)
    return out


def check_compatible(model: nn.Module, tensors: dict[str, torch.Tensor], what: str = "direction") -> None:
    """Every name in `tensors` must be a parameter of `model` with the same shape."""
    have = dict(model.named_parameters())
    missing = [n for n in tensors if n not in have]
    wrong = [f"{n} {tuple(tensors[n].shape)} vs {tuple(have[n].shape)}" for n in tensors
             if n in have and tensors[n].shape != have[n].shape]
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} parameter(s) missing from the model (e.g. {missing[:3]})")
        if wrong:
            parts.append(f"{len(wrong)} with other shapes (e.g. {wrong[:2]})")
        raise LandscapeError(f"the {what} does not fit this model: {'; '.join(parts)}. Both must have "
                             "the same architecture (and number of labels).")


class _Perturbation:
    """θ = θ0 + Σ c_i d_i on a set of parameters; `restore` copies θ0 back and checks it bit for bit."""

    def __init__(self, model: nn.Module, names: Iterable[str]):
        have = dict(model.named_parameters())
        self.params = {n: have[n] for n in names}
        self.orig = {n: p.detach().clone() for n, p in self.params.items()}

    @torch.no_grad()
    def set(self, terms: list[tuple[float, dict[str, torch.Tensor]]]) -> None:
        for n, p in self.params.items():
            p.copy_(self.orig[n])
            for coef, d in terms:
                if n in d and coef != 0.0:
                    p.add_(d[n].to(p.dtype), alpha=float(coef))

    @torch.no_grad()
    def restore(self) -> None:
        for n, p in self.params.items():
            p.copy_(self.orig[n])
        assert all(torch.equal(p, self.orig[n]) for n, p in self.params.items()), "weights not restored"


def _nonzero_names(*dirs: dict[str, torch.Tensor]) -> list[str]:
    names = set()
    for d in dirs:
        names.update(n for n, t in d.items() if bool(t.any()))
    return sorted(names)


def _tick(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


def slice_1d(model: nn.Module, batches: list[Batch], direction: dict[str, torch.Tensor],
             alphas: Sequence[float], loss_fn: LossFn | None = None, progress: Progress | None = None,
             should_stop: ShouldStop | None = None) -> list[float]:
    """Loss at θ + α d for each α; weights restored exactly afterwards."""
    check_compatible(model, direction)
    batches = _to(batches, _device(model))
    pert = _Perturbation(model, _nonzero_names(direction))
    losses: list[float] = []
    try:
        for i, a in enumerate(alphas):
            if should_stop is not None and should_stop():
                raise ProbeStopped(losses)
            pert.set([(a, direction)])
            losses.append(loss_on_batches(model, batches, loss_fn))
            _tick(progress, i + 1, len(alphas))
    finally:
        pert.restore()
    return losses


def slice_2d(model: nn.Module, batches: list[Batch], d1: dict[str, torch.Tensor], d2: dict[str, torch.Tensor],
             alphas: Sequence[float], betas: Sequence[float], loss_fn: LossFn | None = None,
             progress: Progress | None = None, should_stop: ShouldStop | None = None) -> list[list[float | None]]:
    """grid[i][j] = loss at θ + α_i d1 + β_j d2; unevaluated cells stay None when stopped."""
    check_compatible(model, d1)
    check_compatible(model, d2)
    batches = _to(batches, _device(model))
    pert = _Perturbation(model, _nonzero_names(d1, d2))
    grid: list[list[float | None]] = [[None] * len(betas) for _ in alphas]
    total, done = len(alphas) * len(betas), 0
    try:
        for i, a in enumerate(alphas):
            for j, b in enumerate(betas):
                if should_stop is not None and should_stop():
                    raise ProbeStopped(grid)
                pert.set([(a, d1), (b, d2)])
                grid[i][j] = loss_on_batches(model, batches, loss_fn)
                done += 1
                _tick(progress, done, total)
    finally:
        pert.restore()
    return grid


def interpolate(model_a: nn.Module, model_b: nn.Module, batches: list[Batch], alphas: Sequence[float],
                loss_fn: LossFn | None = None, progress: Progress | None = None,
                should_stop: ShouldStop | None = None) -> list[float]:
    """Loss at (1-α) θ_a + α θ_b (evaluated inside model_a, which is restored); α=0 is A, α=1 is B."""
    names_a = {n for n, _ in model_a.named_parameters()}
    names_b = dict(model_b.named_parameters())
    only_a, only_b = sorted(names_a - set(names_b)), sorted(set(names_b) - names_a)
    if only_a or only_b:
        raise LandscapeError(f"the two models do not share their parameters: only in A {only_a[:3]} "
                             f"({len(only_a)}), only in B {only_b[:3]} ({len(only_b)}); interpolation needs "
                             "two checkpoints of one architecture")
    check_compatible(model_a, {n: p.detach() for n, p in names_b.items()}, "other model")
    device = _device(model_a)
    diff = {n: names_b[n].detach().to(device, torch.float32) - p.detach().float()
            for n, p in model_a.named_parameters()}
    return slice_1d(model_a, batches, diff, alphas, loss_fn, progress, should_stop)


# ---------------------------------------------------------------- Hessian
@contextmanager
def _only_grad(model: nn.Module, keep: list[nn.Parameter]):
    """requires_grad on `keep` only, so backward skips the rest; flags restored afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    ids = {id(p) for p in keep}
    try:
        for p, _ in flags:
            p.requires_grad_(id(p) in ids)
        yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)


def _dot(xs: list[torch.Tensor], ys: list[torch.Tensor]) -> torch.Tensor:
    return sum((x.double() * y.double()).sum() for x, y in zip(xs, ys))


def _norm(xs: list[torch.Tensor]) -> float:
    return float(_dot(xs, xs)) ** 0.5


class HessianOperator:
    """v -> H v for the mean loss over fixed batches, by double backprop over the selected parameters.

    cache_graph=True keeps each batch's gradient graph (built once with create_graph) so every product
    costs one extra backward instead of forward + backward + backward; it needs memory for all batches'
    graphs at once, so use it for small probes only.
    """

    def __init__(self, model: nn.Module, batches: list[Batch], params: ParamSpec = None,
                 loss_fn: LossFn | None = None, cache_graph: bool = False):
        self.model = model
        self.named = select_params(model, params)
        self.names = [n for n, _ in self.named]
        self.params = [p for _, p in self.named]
        self.batches = _to(batches, _device(model))
        self.n = _n_examples(self.batches)
        self.loss_fn = loss_fn or default_loss
        self.cache_graph = cache_graph
        self._cached: list[tuple[torch.Tensor, ...]] | None = None
        self.products = 0

    def _grads(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        loss = self.loss_fn(self.model, batch).sum() / self.n
        return torch.autograd.grad(loss, self.params, create_graph=True)

    def gradient(self) -> tuple[float, list[torch.Tensor]]:
        """(mean loss, its gradient) over the batches."""
        total = [torch.zeros_like(p) for p in self.params]
        loss_sum = 0.0
        with _eval_mode(self.model), _only_grad(self.model, self.params):
            for b in self.batches:
                losses = self.loss_fn(self.model, b)
                g = torch.autograd.grad(losses.sum() / self.n, self.params)
                loss_sum += float(losses.detach().double().sum())
                for t, gi in zip(total, g):
                    t.add_(gi)
        return loss_sum / self.n, total

    def __call__(self, v: list[torch.Tensor]) -> list[torch.Tensor]:
        out = [torch.zeros_like(p) for p in self.params]
        with _eval_mode(self.model), _only_grad(self.model, self.params):
            if self.cache_graph and self._cached is None:
                self._cached = [self._grads(b) for b in self.batches]
            for k, b in enumerate(self.batches):
                g = self._cached[k] if self.cache_graph else self._grads(b)
                dot = sum((gi * vi).sum() for gi, vi in zip(g, v))
                hv = torch.autograd.grad(dot, self.params, retain_graph=self.cache_graph)
                for o, h in zip(out, hv):
                    o.add_(h.detach())
        self.products += 1
        return out

    def release(self) -> None:
        self._cached = None

    def as_dict(self, xs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, xs))


def hvp(model: nn.Module, batches: list[Batch], vec: dict[str, torch.Tensor], params: ParamSpec = None,
        loss_fn: LossFn | None = None) -> dict[str, torch.Tensor]:
    """H v for the mean loss over `batches`; `vec` maps parameter names to tensors.

    The Hessian is over the parameters named in `vec` when `params` is None (else over `params`, which
    must match vec's names).
    """
    check_compatible(model, vec, "vector")
    op = HessianOperator(model, batches, params if params is not None else sorted(vec), loss_fn)
    if set(op.names) != set(vec):
        raise LandscapeError("vec must have one tensor per selected parameter")
    return op.as_dict(op([vec[n].to(p) for n, p in op.named]))


def _rand_like(params: list[torch.Tensor], gen: torch.Generator, rademacher: bool) -> list[torch.Tensor]:
    out = []
    for p in params:
        if rademacher:
            t = torch.randint(0, 2, p.shape, generator=gen).float().mul_(2).sub_(1)
        else:
            t = torch.randn(p.shape, generator=gen)
        out.append(t.to(p.device, torch.float32))
    return out


def top_eigenvalues(model: nn.Module, batches: list[Batch], k: int = 1, iters: int = 20, tol: float = 1e-3,
                    seed: int = 0, params: ParamSpec = None, loss_fn: LossFn | None = None,
                    progress: Progress | None = None, should_stop: ShouldStop | None = None,
                    cache_graph: bool = False, return_vectors: bool = False) -> dict:
    """Top-k Hessian eigenvalues by power iteration with deflation, as PyHessian does.

    Each eigenvalue: start from a seeded Gaussian vector, orthonormalise against those found, iterate
    v <- Hv/||Hv|| until the Rayleigh quotient changes by less than tol (relative) or `iters` products.
    Power iteration finds the eigenvalue of largest magnitude. Returns eigenvalues, iterations and a
    converged flag per eigenvalue (and the eigenvectors as name->tensor dicts when return_vectors).
    """
    op = HessianOperator(model, batches, params, loss_fn, cache_graph)
    gen = torch.Generator().manual_seed(int(seed))
    vals: list[float] = []
    vecs: list[list[torch.Tensor]] = []
    its: list[int] = []
    conv: list[bool] = []
    total, done = k * iters, 0
    try:
        for _ in range(k):
            v = _rand_like(op.params, gen, rademacher=False)
            lam, ok, i = None, False, 0
            for i in range(1, iters + 1):
                if should_stop is not None and should_stop():
                    raise ProbeStopped({"eigenvalues": vals + ([lam] if lam is not None else []),
                                        "iterations": its + [i - 1], "converged": conv + [False]})
                for u in vecs:  # deflation: stay orthogonal to the eigenvectors already found
                    c = float(_dot(v, u))
                    v = [vi - c * ui for vi, ui in zip(v, u)]
                s = _norm(v)
                v = [vi / (s + 1e-12) for vi in v]
                hv = op(v)
                new = float(_dot(hv, v))
                s = _norm(hv)
                v = [h / (s + 1e-12) for h in hv]
                done += 1
                _tick(progress, done, total)
                if lam is not None and abs(new - lam) / (abs(lam) + 1e-6) < tol:
                    lam, ok = new, True
                    break
                lam = new
            vals.append(float(lam))
            vecs.append(v)
            its.append(i)
            conv.append(ok)
            done = len(vals) * iters
    finally:
        op.release()
    out = {"eigenvalues": vals, "iterations": its, "converged": conv, "n_params": sum(p.numel() for p in op.params)}
    if return_vectors:
        out["eigenvectors"] = [op.as_dict(v) for v in vecs]
    return out


def hessian_trace(model: nn.Module, batches: list[Batch], samples: int = 20, seed: int = 0,
                  params: ParamSpec = None, loss_fn: LossFn | None = None, progress: Progress | None = None,
                  should_stop: ShouldStop | None = None, cache_graph: bool = False) -> dict:
    """Hutchinson estimate tr(H) ≈ mean_i v_i·H v_i over Rademacher v_i; returns mean and standard error."""
    op = HessianOperator(model, batches, params, loss_fn, cache_graph)
    gen = torch.Generator().manual_seed(int(seed) + 1)
    values: list[float] = []

    def summary() -> dict:
        n = len(values)
        mean = sum(values) / n if n else float("nan")
        sd = (sum((x - mean) ** 2 for x in values) / (n - 1)) ** 0.5 if n > 1 else float("nan")
        return {"trace": mean, "stderr": sd / math.sqrt(n) if n > 1 else float("nan"), "samples": n,
                "values": values}

    try:
        for i in range(samples):
            if should_stop is not None and should_stop():
                raise ProbeStopped(summary())
            v = _rand_like(op.params, gen, rademacher=True)
            values.append(float(_dot(op(v), v)))
            _tick(progress, i + 1, samples)
    finally:
        op.release()
    return summary()


# ---------------------------------------------------------------- sharpness
def sam_sharpness(model: nn.Module, batches: list[Batch], rho: float = 0.05, params: ParamSpec = None,
                  loss_fn: LossFn | None = None) -> dict:
    """L(θ + ρ g/||g||) - L(θ) with g the full gradient on the batches (SAM's first-order worst case)."""
    op = HessianOperator(model, batches, params, loss_fn)
    loss, g = op.gradient()
    gnorm = _norm(g)
    step = {n: gi * (rho / (gnorm + 1e-12)) for n, gi in zip(op.names, g)}
    pert = _Perturbation(model, op.names)
    try:
        pert.set([(1.0, step)])
        perturbed = loss_on_batches(model, op.batches, loss_fn)
    finally:
        pert.restore()
    return {"sharpness": perturbed - loss, "loss": loss, "loss_perturbed": perturbed, "grad_norm": gnorm,
            "rho": rho}


def eps_sharpness(model: nn.Module, batches: list[Batch], eps: float = 1e-3, steps: int = 5, lr: float = 0.5,
                  params: ParamSpec = None, loss_fn: LossFn | None = None, progress: Progress | None = None,
                  should_stop: ShouldStop | None = None) -> dict:
    """Keskar et al. (2017) ε-sharpness: 100·(max_{z∈C} L(θ+z) - L(θ)) / (1 + L(θ)).

    C is the box |z_i| <= ε(|θ_i| + 1) (their A = I). The maximum is approximated by `steps` projected
    sign-gradient ascent steps of size lr·ε(|θ_i|+1) from z = 0 (Keskar used L-BFGS-B); the largest loss
    seen at any iterate is kept, so the value is a lower bound of the true ε-sharpness.
    """
    op = HessianOperator(model, batches, params, loss_fn)
    pert = _Perturbation(model, op.names)
    bound = {n: eps * (pert.orig[n].abs() + 1.0) for n in op.names}
    z = {n: torch.zeros_like(pert.orig[n]) for n in op.names}
    base, best, trace = None, None, []
    try:
        for s in range(steps):
            if should_stop is not None and should_stop():
                break
            pert.set([(1.0, z)])
            loss, g = op.gradient()
            if base is None:
                base = best = loss
            best = max(best, loss)
            trace.append(loss)
            with torch.no_grad():
                for n, gi in zip(op.names, g):
                    z[n].add_(lr * bound[n] * gi.sign()).clamp_(min=-bound[n], max=bound[n])
            _tick(progress, s + 1, steps)
        pert.set([(1.0, z)])
        last = loss_on_batches(model, op.batches, loss_fn)
        trace.append(last)
        best = last if best is None else max(best, last)
        if base is None:
            pert.set([])
            base = loss_on_batches(model, op.batches, loss_fn)
    finally:
        pert.restore()
    return {"sharpness": 100.0 * (best - base) / (1.0 + base), "loss": base, "max_loss": best, "eps": eps,
            "steps": steps, "lr": lr, "losses": trace}


# ---------------------------------------------------------------- one probe as a record
@dataclass
class ProbeSettings:
    split: str = "validation"
    examples: int = 256
    batch_size: int = 16  # with one thread per core, smaller batches beat 32 on CPU (bench/landscape_cost.py)
    max_length: int = 0  # 0 = the run's data.max_length (64 when unknown)
    points: int = 21  # slice1d/interp: points; slice2d: points per axis
    span: float = 1.0  # slices cover alpha in [-span, span]
    margin: float = 0.25  # interp covers alpha in [-margin, 1 + margin]
    seed: int = 0
    k: int = 1  # top eigenvalues
    iters: int = 20
    tol: float = 1e-3
    samples: int = 20  # Hutchinson vectors
    rho: float = 0.05
    eps: float = 1e-3
    steps: int = 5
    params: str = "all"  # all | encoder | no_embeddings
    cache_graph: bool = False

    @classmethod
    def from_any(cls, settings) -> ProbeSettings:
        if settings is None:
            return cls()
        if isinstance(settings, cls):
            return settings
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise LandscapeError(f"unknown landscape setting(s) {unknown}; known: {sorted(known)}")
        return cls(**settings)


# Bounds checked before any work starts (check_settings): (low, high, low excluded). A slice beyond ~200
# points or a 2-D grid beyond 101x101 adds no information at this resolution and runs for hours on a CPU.
BOUNDS = {"examples": (0, 100_000, False), "batch_size": (1, 1024, False), "max_length": (0, 8192, False),
          "points": (1, 201, False), "span": (0.0, 100.0, True), "margin": (0.0, 10.0, False),
          "seed": (0, 2**31 - 1, False), "k": (1, 20, False), "iters": (1, 500, False), "tol": (0.0, 1.0, True),
          "samples": (1, 1000, False), "rho": (0.0, 10.0, True), "eps": (0.0, 1.0, True), "steps": (1, 100, False)}
MAX_POINTS_2D = 101


def check_settings(kind: str, settings=None, position_limit: int | None = None) -> ProbeSettings:
    """Refuse out-of-range probe settings (NaN included) before any work starts; returns the settings."""
    if kind not in KINDS:
        raise LandscapeError(f"unknown landscape kind {kind!r}; use one of {', '.join(KINDS)}")
    s = ProbeSettings.from_any(settings)
    for name, (lo, hi, lo_open) in BOUNDS.items():
        v = getattr(s, name)
        flag = "--" + name.replace("_", "-")
        if isinstance(v, bool) or not isinstance(v, int | float) or (isinstance(lo, int) and not isinstance(v, int)):
            raise LandscapeError(f"{flag}={v!r} must be a {'whole ' if isinstance(lo, int) else ''}number")
        if not math.isfinite(v) or (v <= lo if lo_open else v < lo) or v > hi:
            raise LandscapeError(f"{flag}={v} is out of range: use a number in {'(' if lo_open else '['}{lo}, {hi}]")
    if kind == "slice2d" and s.points > MAX_POINTS_2D:
        raise LandscapeError(f"--points={s.points} is out of range for slice2d ({s.points}x{s.points} = "
                             f"{s.points ** 2} evaluations): use at most {MAX_POINTS_2D} points per axis")
    if position_limit and s.max_length > position_limit:
        raise LandscapeError(f"--max-length={s.max_length} is above the model's position limit {position_limit}")
    if s.params not in ("all", "encoder", "no_embeddings"):
        raise LandscapeError(f"--params={s.params!r}: use all, encoder or no_embeddings")
    return s


# Forward throughput assumed for all-MiniLM-L6-v2 (22.7M parameters) on 2 CPU cores at max_length 64:
# ~100 examples/s, i.e. parameters x examples per second of a float32 eval forward. A FLOP-count guess,
# not a clean measurement (bench/landscape_cost.py prints the rate it sees; pass `rate=` to override).
FORWARD_RATE = 22.7e6 * 100
HVP_COST = 5.0  # one Hessian-vector product ≈ 5 forwards (forward, backward with graph, double backward)
GRAD_COST = 3.0


def estimate_cost(kind: str, settings=None, n_params: int = 22_700_000, n_examples: int | None = None,
                  rate: float = FORWARD_RATE) -> float:
    """A rough estimate in seconds (not a measurement): forwards needed x time of one forward.

    One forward of one example is taken to cost n_params / rate seconds, rate measured for MiniLM on
    the 2-core CPU this project runs on (pass `rate` for other hardware); Hessian power iteration is
    costed at its upper bound of k*iters products.
    """
    s = ProbeSettings.from_any(settings)
    n = n_examples if n_examples is not None else s.examples
    if kind in ("slice1d", "interp"):
        units = s.points + 1
    elif kind == "slice2d":
        units = s.points ** 2 + 1
    elif kind == "hessian":
        units = (s.k * s.iters + s.samples) * HVP_COST + 1
    elif kind == "sharpness":
        units = (1 + s.steps) * GRAD_COST + 3
    else:
        raise LandscapeError(f"unknown landscape kind {kind!r}; use one of {', '.join(KINDS)}")
    return float(units * n * n_params / rate)


def _load(source, attn: str) -> nn.Module:
    if isinstance(source, nn.Module):
        return source
    from .models import load_checkpoint

    try:
        model, _ = load_checkpoint(source, attn_implementation=attn)
    except (ValueError, ImportError):
        model, _ = load_checkpoint(source)
    return model


def probe_run(source, kind: str, settings=None, *, data=None, batches: list[Batch] | None = None,
              tokenizer=None, other=None, loss_fn: LossFn | None = None, progress: Progress | None = None,
              should_stop: ShouldStop | None = None, device: str | torch.device | None = None) -> dict:
    """Run one probe and return a JSON-serialisable record with its settings and seconds.

    source: an nn.Module or a checkpoint folder (load_checkpoint). Data: `batches` (from fixed_batches),
    or `data` (a data.Split) with `tokenizer` (defaults to the checkpoint's). other: for kind 'interp',
    the second model (nn.Module or checkpoint folder). When `should_stop()` turns true the record holds
    the partial results with "stopped": true. The model is left with its weights unchanged.
    """
    s = check_settings(kind, settings)
    t0 = time.time()
    # Forward-only probes may use fused attention; double backprop needs the eager implementation.
    attn = "sdpa" if kind in ("slice1d", "slice2d", "interp") else "eager"
    model = _load(source, attn)
    if tokenizer is None and not isinstance(source, nn.Module):
        from .models import load_tokenizer

        tokenizer = load_tokenizer(str(source))
    if device is not None:
        model.to(device)
    model.float()
    _check_float32(model)
    if batches is None:
        if data is None or tokenizer is None:
            raise LandscapeError("probe_run needs `batches`, or `data` (a Split) and a tokenizer")
        batches = fixed_batches(data, tokenizer, s.examples, s.batch_size, s.max_length or 64, s.seed)
    batches = _to(batches, _device(model))
    n_ex = _n_examples(batches)
    sel = select_params(model, s.params)
    n_params = sum(p.numel() for _, p in sel)
    record: dict = {"kind": kind, "settings": asdict(s), "n_examples": n_ex, "n_params": n_params,
                    "device": str(_device(model)), "created": time.time(),
                    "estimated_seconds": round(estimate_cost(kind, s, n_params, n_ex), 1)}
    if isinstance(source, str | Path):
        record["checkpoint"] = str(source)
    stopped = False
    load_s = time.time() - t0
    t1 = time.time()
    try:
        record["loss"] = loss_on_batches(model, batches, loss_fn)
        if kind == "slice1d":
            alphas = _linspace(-s.span, s.span, s.points)
            record["alphas"] = alphas
            d = random_direction(model, s.seed, params=s.params)
            try:
                record["losses"] = slice_1d(model, batches, d, alphas, loss_fn, progress, should_stop)
            except ProbeStopped as stop:
                record["losses"], stopped = stop.partial, True
            _slice_summary(record)
        elif kind == "slice2d":
            alphas = _linspace(-s.span, s.span, s.points)
            record["alphas"] = record["betas"] = alphas
            d1 = random_direction(model, s.seed, params=s.params)
            d2 = random_direction(model, s.seed + 1, params=s.params)
            try:
                record["losses"] = slice_2d(model, batches, d1, d2, alphas, alphas, loss_fn, progress, should_stop)
            except ProbeStopped as stop:
                record["losses"], stopped = stop.partial, True
        elif kind == "interp":
            if other is None:
                raise LandscapeError("kind 'interp' needs the other model (--other RUN)")
            other_model = _load(other, attn).to(_device(model)).float()
            if isinstance(other, str | Path):
                record["other"] = str(other)
            alphas = _linspace(-s.margin, 1 + s.margin, s.points)
            record["alphas"] = alphas
            try:
                record["losses"] = interpolate(model, other_model, batches, alphas, loss_fn, progress, should_stop)
            except ProbeStopped as stop:
                record["losses"], stopped = stop.partial, True
        elif kind == "hessian":
            try:
                record.update(top_eigenvalues(model, batches, s.k, s.iters, s.tol, s.seed, s.params, loss_fn,
                                              progress, should_stop, s.cache_graph))
                tr = hessian_trace(model, batches, s.samples, s.seed, s.params, loss_fn, progress, should_stop,
                                   s.cache_graph)
                record.update(trace=tr["trace"], trace_stderr=tr["stderr"], trace_samples=tr["samples"],
                              trace_values=tr["values"])
            except ProbeStopped as stop:
                stopped = True
                part = stop.partial
                if "trace" in part:
                    record.update(trace=part["trace"], trace_stderr=part["stderr"], trace_samples=part["samples"],
                                  trace_values=part["values"])
                else:
                    record.update(part)
        elif kind == "sharpness":
            record["sam"] = sam_sharpness(model, batches, s.rho, s.params, loss_fn)
            if should_stop is not None and should_stop():
                stopped = True
            else:
                record["eps"] = eps_sharpness(model, batches, s.eps, s.steps, params=s.params, loss_fn=loss_fn,
                                              progress=progress, should_stop=should_stop)
                stopped = bool(should_stop is not None and should_stop())
    finally:
        record["seconds"] = round(time.time() - t1, 3)
        record["load_seconds"] = round(load_s, 3)
    record["stopped"] = stopped
    return _jsonable(record)


def _linspace(a: float, b: float, n: int) -> list[float]:
    if n < 1:
        raise LandscapeError("points must be at least 1")
    return [a] if n == 1 else [a + (b - a) * i / (n - 1) for i in range(n)]


def _slice_summary(record: dict) -> None:
    """Loss rise at the ends of the slice, a one-number flatness summary (smaller = flatter)."""
    losses = record.get("losses") or []
    if losses:
        record["max_increase"] = max(losses) - record["loss"]


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else str(x)
    return x


# ---------------------------------------------------------------- command line
def add_landscape_parser(subparsers) -> argparse.ArgumentParser:
    """Add `landscape` to an argparse subparsers object; sets func=cmd_landscape."""
    p = subparsers.add_parser(
        "landscape", help="loss-landscape flatness probes of a run's best checkpoint",
        description="Probe the loss landscape of a run's best checkpoint (dropout off, float32, a fixed "
                    "seeded subset of a split) and save the result as analyses/landscape-<kind>.json.")
    p.add_argument("run", metavar="RUN", help="run name (in --runs-dir) or run folder")
    p.add_argument("--kind", choices=KINDS, default="slice1d")
    p.add_argument("--split", default="validation", help="data split of the run's dataset (default validation)")
    p.add_argument("--examples", type=int, default=256, help="fixed examples to evaluate on (0 = all)")
    p.add_argument("--batch-size", type=int, default=ProbeSettings.batch_size)
    p.add_argument("--max-length", type=int, default=0, help="0 = the run's data.max_length")
    p.add_argument("--points", type=int, default=21, help="points per axis (slices, interp)")
    p.add_argument("--span", type=float, default=1.0, help="slices cover alpha in [-span, span]")
    p.add_argument("--margin", type=float, default=0.25, help="interp covers alpha in [-margin, 1+margin]")
    p.add_argument("--seed", type=int, default=0, help="seed of the directions, subset and random vectors")
    p.add_argument("--k", type=int, default=1, help="hessian: top eigenvalues to compute")
    p.add_argument("--iters", type=int, default=20, help="hessian: power-iteration steps per eigenvalue")
    p.add_argument("--samples", type=int, default=20, help="hessian: Hutchinson vectors for the trace")
    p.add_argument("--rho", type=float, default=0.05, help="sharpness: SAM radius")
    p.add_argument("--eps", type=float, default=1e-3, help="sharpness: Keskar box size")
    p.add_argument("--params", choices=("all", "encoder", "no_embeddings"), default="all")
    p.add_argument("--other", metavar="RUN", help="interp: the other run, checkpoint folder, or 'pretrained'")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--runs-dir", default=None, help="runs folder (default $UEGR_HOME or ./runs)")
    p.add_argument("--stop-file", default=None, help="stop cleanly (saving partial results) when this file appears")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_landscape)
    return p


def _checkpoint_position_limit(ckpt: Path) -> int | None:
    try:
        n = json.loads((ckpt / "config.json").read_text(encoding="utf-8")).get("max_position_embeddings")
    except (OSError, ValueError, AttributeError):
        return None
    return n if isinstance(n, int) and n > 0 else None


def _resolve_other(store, spec: str, run):
    """A checkpoint folder, or a Module for 'pretrained' (the run's base model, fresh head)."""
    if spec == "pretrained":
        from .models import load_model

        cfg = run.config()
        ckpt_cfg = json.loads((run.best_checkpoint() / "config.json").read_text(encoding="utf-8"))
        num_labels = len(ckpt_cfg.get("id2label") or {}) or 2
        model, _ = load_model(cfg.model, num_labels, seed=cfg.optim.seed)
        return model, f"pretrained:{cfg.model.name}"
    path = Path(spec)
    if (path / "config.json").is_file() and not (path / "status.json").is_file():
        return path, str(path)
    other_run = store.get(spec)
    return other_run.best_checkpoint(), other_run.name


def cmd_landscape(args) -> int:
    """`uegr landscape RUN --kind ...`: 0 on success (also when stopped via --stop-file), 2 on errors."""
    from . import jobs
    from .data import DataError, load_dataset
    from .models import ModelLoadError, load_tokenizer
    from .runs import RunError, RunStore

    try:
        store = RunStore(args.runs_dir)
        run = store.get(args.run)
        ckpt = run.best_checkpoint()
        cfg = run.config()
        settings = ProbeSettings(split=args.split, examples=args.examples, batch_size=args.batch_size,
                                 max_length=args.max_length or cfg.data.max_length, points=args.points,
                                 span=args.span, margin=args.margin, seed=args.seed, k=args.k, iters=args.iters,
                                 samples=args.samples, rho=args.rho, eps=args.eps, params=args.params)
        check_settings(args.kind, settings, _checkpoint_position_limit(ckpt))
        if args.device != "auto" and args.device != "cpu" and not args.device.startswith(("cuda", "mps")):
            raise LandscapeError(f"--device {args.device!r}: use auto, cpu or cuda")
        if args.kind == "interp" and not args.other:
            raise LandscapeError("--kind interp needs --other RUN (a run, a checkpoint folder or 'pretrained')")
        print(f"landscape {args.kind}: estimated ~{estimate_cost(args.kind, settings):.0f} s of probing for "
              f"{settings.examples or 'all'} examples (checked before loading)", file=sys.stderr)
        ds = load_dataset(cfg.data)
        if args.split not in ds.splits:
            raise LandscapeError(f"split {args.split!r} not in this run's data (have {', '.join(ds.splits)})")
        tokenizer = load_tokenizer(str(ckpt))
        batches = fixed_batches(ds.splits[args.split], tokenizer, settings.examples, settings.batch_size,
                                settings.max_length, settings.seed)
        other, other_name = (None, None)
        if args.kind == "interp":
            if not args.other:
                raise LandscapeError("--kind interp needs --other RUN (a run, a checkpoint folder or 'pretrained')")
            other, other_name = _resolve_other(store, args.other, run)
        device = args.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise LandscapeError(f"--device {device}: no CUDA GPU is available here; use --device cpu")
        stop_path = Path(args.stop_file) if args.stop_file else None
        should_stop = lambda: (stop_path is not None and stop_path.exists()) or jobs.stop_requested()  # noqa: E731
        bar = None
        progress = None
        if not args.no_progress or jobs.current() is not None:
            from tqdm.auto import tqdm

            def progress(done: int, total: int) -> None:
                nonlocal bar
                jobs.report(done, total, f"{args.kind}: {done}/{total}")
                if args.no_progress:
                    return
                if bar is None or bar.total != total or done < bar.n:
                    if bar is not None:
                        bar.close()
                    bar = tqdm(total=total, desc=f"landscape {args.kind}", file=sys.stderr, leave=False)
                bar.update(done - bar.n)

        est = estimate_cost(args.kind, settings, n_examples=_n_examples(batches))
        print(f"landscape {args.kind} of {run.name} ({ckpt.name} checkpoint) on {_n_examples(batches)} "
              f"{args.split} examples; estimated ~{est:.0f} s", file=sys.stderr)
        try:
            result = probe_run(ckpt, args.kind, settings, batches=batches, tokenizer=tokenizer, other=other,
                               progress=progress, should_stop=should_stop, device=device)
        finally:
            if bar is not None:
                bar.close()
        result.update(run=run.name, checkpoint=str(ckpt), data=cfg.data.source)
        if other_name:
            result["other"] = other_name
        path = run.write_analysis(f"landscape-{args.kind}", result)
    except (LandscapeError, RunError, ModelLoadError, DataError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'stopped early; partial ' if result['stopped'] else ''}result saved to {path} "
              f"({result['seconds']:.1f} s)", file=sys.stderr)
        print(_brief(result))
    return 0


def _brief(r: dict) -> str:
    k = r["kind"]
    if k in ("slice1d", "interp", "slice2d"):
        extra = f", max increase {r['max_increase']:.4f}" if "max_increase" in r else ""
        return f"{k}: loss at the checkpoint {r['loss']:.4f}{extra}"
    if k == "hessian":
        ev = ", ".join(f"{v:.4g}" for v in r.get("eigenvalues", []))
        tr = r.get("trace")
        return f"hessian: top eigenvalue(s) {ev or '-'}; trace {tr if tr is None else format(tr, '.4g')}"
    sam, eps = r.get("sam", {}), r.get("eps", {})
    return (f"sharpness: SAM(rho={sam.get('rho')}) {sam.get('sharpness', float('nan')):.4g}; "
            f"eps-sharpness(eps={eps.get('eps')}) {eps.get('sharpness', float('nan')):.4g}")
