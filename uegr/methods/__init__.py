"""Training methods: each answers "what is the loss of this batch, and its named parts"."""

from __future__ import annotations

from ..config import MethodConfig
from .base import Method, StepContext
from .uegr import UEGR
from .vanilla import Vanilla

REGISTRY: dict[str, type[Method]] = {"uegr": UEGR, "vanilla": Vanilla}

try:  # baselines live beside UEGR; registered when present
    from .baselines import BASELINES

    REGISTRY.update(BASELINES)
except ImportError:  # pragma: no cover
    pass


def build_method(cfg: MethodConfig, seed: int = 0) -> Method:
    if cfg.name not in REGISTRY:
        raise ValueError(f"method.name={cfg.name!r} is not available; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[cfg.name](cfg, seed)


__all__ = ["Method", "StepContext", "build_method", "REGISTRY"]
