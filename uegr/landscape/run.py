"""One landscape probe as a JSON-serialisable record (`probe_run`), its settings and their bounds
(`ProbeSettings`, `check_settings`) and the cost model that estimates its seconds before it starts."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from . import probes as P
from .probes import KINDS, LandscapeError


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
    from ..models import load_checkpoint

    try:
        model, _ = load_checkpoint(source, attn_implementation=attn)
    except (ValueError, ImportError):
        model, _ = load_checkpoint(source)
    return model


def probe_run(source, kind: str, settings=None, *, data=None, batches: list[P.Batch] | None = None,
              tokenizer=None, other=None, loss_fn: P.LossFn | None = None, progress: P.Progress | None = None,
              should_stop: P.ShouldStop | None = None, device: str | torch.device | None = None) -> dict:
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
        from ..models import load_tokenizer

        tokenizer = load_tokenizer(str(source))
    if device is not None:
        model.to(device)
    model.float()
    P._check_float32(model)
    if batches is None:
        if data is None or tokenizer is None:
            raise LandscapeError("probe_run needs `batches`, or `data` (a Split) and a tokenizer")
        batches = P.fixed_batches(data, tokenizer, s.examples, s.batch_size, s.max_length or 64, s.seed)
    batches = P._to(batches, P._device(model))
    n_ex = P._n_examples(batches)
    sel = P.select_params(model, s.params)
    n_params = sum(p.numel() for _, p in sel)
    record: dict = {"kind": kind, "settings": asdict(s), "n_examples": n_ex, "n_params": n_params,
                    "device": str(P._device(model)), "created": time.time(),
                    "estimated_seconds": round(estimate_cost(kind, s, n_params, n_ex), 1)}
    if isinstance(source, str | Path):
        record["checkpoint"] = str(source)
    stopped = False
    load_s = time.time() - t0
    t1 = time.time()
    try:
        record["loss"] = P.loss_on_batches(model, batches, loss_fn)
        if kind == "slice1d":
            alphas = _linspace(-s.span, s.span, s.points)
            record["alphas"] = alphas
            d = P.random_direction(model, s.seed, params=s.params)
            try:
                record["losses"] = P.slice_1d(model, batches, d, alphas, loss_fn, progress, should_stop)
            except P.ProbeStopped as stop:
                record["losses"], stopped = stop.partial, True
            _slice_summary(record)
        elif kind == "slice2d":
            alphas = _linspace(-s.span, s.span, s.points)
            record["alphas"] = record["betas"] = alphas
            d1 = P.random_direction(model, s.seed, params=s.params)
            d2 = P.random_direction(model, s.seed + 1, params=s.params)
            try:
                record["losses"] = P.slice_2d(model, batches, d1, d2, alphas, alphas, loss_fn, progress, should_stop)
            except P.ProbeStopped as stop:
                record["losses"], stopped = stop.partial, True
        elif kind == "interp":
            if other is None:
                raise LandscapeError("kind 'interp' needs the other model (--other RUN)")
            other_model = _load(other, attn).to(P._device(model)).float()
            if isinstance(other, str | Path):
                record["other"] = str(other)
            alphas = _linspace(-s.margin, 1 + s.margin, s.points)
            record["alphas"] = alphas
            try:
                record["losses"] = P.interpolate(model, other_model, batches, alphas, loss_fn, progress, should_stop)
            except P.ProbeStopped as stop:
                record["losses"], stopped = stop.partial, True
        elif kind == "hessian":
            try:
                record.update(P.top_eigenvalues(model, batches, s.k, s.iters, s.tol, s.seed, s.params, loss_fn,
                                              progress, should_stop, s.cache_graph))
                tr = P.hessian_trace(model, batches, s.samples, s.seed, s.params, loss_fn, progress, should_stop,
                                   s.cache_graph)
                record.update(trace=tr["trace"], trace_stderr=tr["stderr"], trace_samples=tr["samples"],
                              trace_values=tr["values"])
            except P.ProbeStopped as stop:
                stopped = True
                part = stop.partial
                if "trace" in part:
                    record.update(trace=part["trace"], trace_stderr=part["stderr"], trace_samples=part["samples"],
                                  trace_values=part["values"])
                else:
                    record.update(part)
        elif kind == "sharpness":
            record["sam"] = P.sam_sharpness(model, batches, s.rho, s.params, loss_fn)
            if should_stop is not None and should_stop():
                stopped = True
            else:
                record["eps"] = P.eps_sharpness(model, batches, s.eps, s.steps, params=s.params, loss_fn=loss_fn,
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
