"""Intervals for comparing models on the same examples (attack results, evaluations)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % (by default) Wilson score interval for a proportion k/n; unlike p ± z·se it stays in [0, 1]
    and behaves near 0 and 1, where accuracy under attack often sits."""
    if n <= 0:
        raise ValueError("wilson_interval: n must be positive")
    if not 0 <= k <= n:
        raise ValueError(f"wilson_interval: k={k} must lie in [0, n={n}]")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) + z * z / (4 * n)) / n) ** 0.5 / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], resamples: int = 2000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float]:
    """Mean of a - b over paired items, with a percentile bootstrap interval over items.

    Pairing matters: two models attacked on the same sentences share each sentence's difficulty, so
    the interval of their difference is much narrower than two separate intervals suggest."""
    if len(a) != len(b):
        raise ValueError(f"paired_bootstrap: {len(a)} and {len(b)} items; pair the same items")
    x = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if x.size == 0:
        raise ValueError("paired_bootstrap: no items")
    rng = np.random.default_rng(seed)
    chunk = max(1, 4_000_000 // x.size)  # resample indices in blocks: a whole attacked test set stays small
    means = np.concatenate([x[rng.integers(0, x.size, size=(min(chunk, resamples - start), x.size))].mean(axis=1)
                            for start in range(0, resamples, chunk)])
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(x.mean()), float(lo), float(hi)
