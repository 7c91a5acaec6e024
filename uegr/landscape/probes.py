"""Loss-landscape probe math for any sequence classifier (what each measures: docs/method.md, Glossary).

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
One probe as a record with a cost estimate is in `run.py`; the `uegr landscape` command in `cli.py`.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch
from torch import nn

from ..models import model_mode

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
    from ..data import Encoded, make_collate

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
    """Per-example float32 task loss: cross-entropy, MSE for one-output regression heads (as in training)."""
    from ..models import classification_loss

    out = model(**{k: v for k, v in batch.items() if k != "labels"})
    return classification_loss(out.logits if hasattr(out, "logits") else out, batch["labels"], reduction="none")


def _device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _to(batches: Iterable[Batch], device: torch.device) -> list[Batch]:
    return [{k: v.to(device) for k, v in b.items()} for b in batches]


def _n_examples(batches: list[Batch]) -> int:
    return sum(int(b["labels"].shape[0]) for b in batches)


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
    with model_mode(model):
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
        from ..models import encoder_layer_prefixes

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
        with model_mode(self.model), _only_grad(self.model, self.params):
            for b in self.batches:
                losses = self.loss_fn(self.model, b)
                g = torch.autograd.grad(losses.sum() / self.n, self.params)
                loss_sum += float(losses.detach().double().sum())
                for t, gi in zip(total, g):
                    t.add_(gi)
        return loss_sum / self.n, total

    def __call__(self, v: list[torch.Tensor]) -> list[torch.Tensor]:
        out = [torch.zeros_like(p) for p in self.params]
        with model_mode(self.model), _only_grad(self.model, self.params):
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
