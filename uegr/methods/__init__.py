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


def method_class(name: str) -> type[Method]:
    if name not in REGISTRY:
        raise ValueError(f"method.name={name!r} is not available; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def build_method(cfg: MethodConfig, seed: int = 0) -> Method:
    return method_class(cfg.name)(cfg, seed)


__all__ = ["Method", "StepContext", "build_method", "method_class", "REGISTRY"]
