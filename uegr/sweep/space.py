"""Search spaces: config field -> distribution, read from YAML and checked against the config schema.

    method.adv_eps: {low: 0.01, high: 0.2, log: true}     # float field -> suggest_float
    method.k: {low: 1, high: 4}                           # int field -> suggest_int (optional step)
    method.rate_rule: {choices: [uniform, grid]}          # any field -> suggest_categorical

Nested sections (`method: {k: {low: 1, high: 4}}`) are accepted too. Every bound and choice is set on the
base config and validated, so a space can only propose configs `uegr train` accepts.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from .. import config as C

KEYS = {"low", "high", "log", "step", "choices"}

# A documented default space per method (README "Tune"): the knobs that matter most for that method, around
# its defaults. The learning rate is searched for every method.
_LR = {"optim.lr": {"low": 1e-5, "high": 5e-4, "log": True}}
DEFAULT_SPACES: dict[str, dict[str, dict]] = {
    "uegr": {**_LR,
             "method.adv_eps": {"low": 0.01, "high": 0.2, "log": True},
             "method.k": {"low": 1, "high": 3},
             "method.lambda_adv": {"low": 0.1, "high": 3.0, "log": True},
             "method.lambda_js": {"low": 0.1, "high": 3.0, "log": True},
             "method.p_max": {"low": 0.1, "high": 0.4},
             "method.keep_ratio": {"low": 0.1, "high": 1.0}},
    "vanilla": {**_LR,
                "optim.warmup_ratio": {"low": 0.0, "high": 0.2},
                "optim.weight_decay": {"low": 0.0, "high": 0.1}},
    "rdrop": {**_LR, "method.rdrop_alpha": {"low": 0.1, "high": 5.0, "log": True}},
    "freelb": {**_LR,
               "method.freelb_steps": {"low": 1, "high": 3},
               "method.freelb_lr": {"low": 0.01, "high": 0.3, "log": True},
               "method.freelb_max_norm": {"low": 0.1, "high": 2.0, "log": True}},
    "childtuning": {**_LR, "method.keep_ratio": {"low": 0.1, "high": 0.9}},
    "roast": {**_LR,
              "method.roast_kl": {"low": 0.001, "high": 0.1, "log": True},
              "method.keep_ratio": {"low": 0.1, "high": 0.9}},
}


class SpaceError(ValueError):
    """A search space entry is not allowed; the message names the field and the fix."""


def _field_type(dotted: str) -> str:
    if "." not in dotted:
        raise SpaceError(f"search space: {dotted!r} is not a config field; use section.field, e.g. method.k")
    section, name = dotted.split(".", 1)
    if section not in C.SECTIONS:
        raise SpaceError(f"search space: {dotted!r}: unknown section; use one of {', '.join(C.SECTIONS)}")
    types = {f.name: str(f.type) for f in fields(C.SECTIONS[section])}
    if name not in types:
        raise SpaceError(f"search space: {dotted!r}: unknown field; {section} has {', '.join(types)}")
    return types[name]


def _flatten(raw: dict) -> dict:
    out = {}
    for key, spec in raw.items():
        if key in C.SECTIONS and isinstance(spec, dict) and not (KEYS & set(spec)):
            for sub, s in spec.items():
                out[f"{key}.{sub}"] = s
        else:
            out[key] = spec
    return out


def _check_value(base: C.Config, dotted: str, value: Any, what: str) -> Any:
    cfg = base.copy()
    try:
        C.set_field(cfg, dotted, value)
        C.validate(cfg)
    except C.ConfigError as exc:
        raise SpaceError(f"search space: {dotted} {what}={value!r} is not allowed: {exc.allowed}") from None
    section, name = dotted.split(".", 1)
    return getattr(getattr(cfg, section), name)


def parse_space(raw: Any, base: C.Config) -> dict[str, dict]:
    """Validate a space mapping against the config schema and the base config; returns {field: spec}."""
    if not isinstance(raw, dict) or not raw:
        raise SpaceError("search space: expected a non-empty mapping of config fields to "
                         "{low, high[, log, step]} or {choices: [...]}")
    out = {}
    for dotted, spec in _flatten(raw).items():
        kind = _field_type(dotted)
        if not isinstance(spec, dict) or not spec:
            raise SpaceError(f"search space: {dotted} must map to {{low, high[, log]}} or {{choices: [...]}}, "
                             f"got {spec!r}")
        unknown = set(spec) - KEYS
        if unknown:
            raise SpaceError(f"search space: {dotted} has unknown key(s) {', '.join(sorted(unknown))}; "
                             f"use {', '.join(sorted(KEYS))}")
        if "choices" in spec:
            if set(spec) != {"choices"}:
                raise SpaceError(f"search space: {dotted}: give either choices or low/high, not both")
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                raise SpaceError(f"search space: {dotted} choices must be a non-empty list")
            checked = [_check_value(base, dotted, c, "choice") for c in choices]
            if any(isinstance(c, list) for c in checked):
                checked = [",".join(c) for c in checked]  # list fields are proposed as comma strings
            out[dotted] = {"choices": checked}
            continue
        if kind not in ("int", "float", "<class 'int'>", "<class 'float'>"):
            raise SpaceError(f"search space: {dotted} is a {kind} field: give {{choices: [...]}}")
        if "low" not in spec or "high" not in spec:
            raise SpaceError(f"search space: {dotted} needs both low and high (or choices)")
        is_int = "int" in kind
        low = _check_value(base, dotted, spec["low"], "low")
        high = _check_value(base, dotted, spec["high"], "high")
        if not low < high:
            raise SpaceError(f"search space: {dotted} low={low!r} must be below high={high!r}")
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise SpaceError(f"search space: {dotted} log must be true or false, got {log!r}")
        if log and low <= 0:
            raise SpaceError(f"search space: {dotted} log=true needs low > 0, got {low!r}")
        entry = {"low": low, "high": high, "log": log, "type": "int" if is_int else "float"}
        if "step" in spec:
            step = spec["step"]
            if isinstance(step, bool) or not isinstance(step, int | float) or step <= 0 or log:
                raise SpaceError(f"search space: {dotted} step must be a positive number (and log false), got {step!r}")
            entry["step"] = int(step) if is_int else float(step)
        out[dotted] = entry
    return out


def load_space(path: str | Path | None, base: C.Config) -> dict[str, dict]:
    """The space in a YAML/JSON file, or the method's default space when path is None."""
    if path is None:
        return parse_space(DEFAULT_SPACES[base.method.name], base)
    path = Path(path)
    if not path.is_file():
        raise SpaceError(f"--space {path}: the file does not exist")
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpaceError(f"--space {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_space(raw, base)


def suggest(trial, space: dict[str, dict]) -> dict[str, Any]:
    """Ask an Optuna trial for one value per field."""
    params = {}
    for name, spec in space.items():
        if "choices" in spec:
            params[name] = trial.suggest_categorical(name, spec["choices"])
        elif spec["type"] == "int":
            params[name] = trial.suggest_int(name, spec["low"], spec["high"], step=spec.get("step", 1),
                                             log=spec["log"])
        else:
            params[name] = trial.suggest_float(name, spec["low"], spec["high"], step=spec.get("step"),
                                               log=spec["log"])
    return params
