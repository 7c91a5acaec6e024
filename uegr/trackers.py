"""Experiment trackers through Accelerate's tracker API (`runtime.report_to`).

The run config goes in as hyper-parameters (flattened to `section.field`), and every numeric value of
every record the run store receives (metrics.jsonl) is logged as `<kind>/<field>` at the record's
step: `train/loss`, `train/js`, `eval/accuracy`, ... (train and eval both have a `loss`, hence the kind).
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

from .callbacks import Callback

TRACKERS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "trackio": "trackio", "aim": "aim",
            "wandb": "wandb"}  # report_to name -> the package it needs


def check_available(report_to: list[str]) -> None:
    """Fail before training starts, naming the package to install (Accelerate would only warn)."""
    for name in report_to:
        if name not in TRACKERS:
            raise ValueError(f"runtime.report_to: unknown tracker {name!r}; use any of {', '.join(TRACKERS)}")
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise ValueError(f"runtime.report_to includes {name!r} but its package is missing: install "
                             f"{TRACKERS[name]} (pip install {TRACKERS[name]}), or remove it from runtime.report_to")


def accelerator_kwargs(report_to: list[str], logging_dir: str | Path | None) -> dict:
    """Arguments for Accelerator(...): log_with and the folder file-based trackers write into."""
    if not report_to:
        return {}
    check_available(report_to)
    if "wandb" in report_to:
        os.environ.setdefault("WANDB_MODE", "offline")  # never reach out to a server unless asked
    return {"log_with": list(report_to), "project_dir": str(logging_dir) if logging_dir else None}


def hparams(cfg_dict: dict) -> dict:
    """{'optim.lr': 2e-05, 'method.dropout_targets': 'hidden,attention', ...}: scalars only (TensorBoard)."""
    out = {}
    for section, values in cfg_dict.items():
        for key, value in values.items():
            if isinstance(value, list | tuple):
                value = ",".join(map(str, value))
            out[f"{section}.{key}"] = value
    return out


def scalars(record: dict) -> dict[str, float]:
    """The finite numeric fields of a run-store record under `<kind>/<field>` (step and time excluded)."""
    kind = record.get("kind", "train")
    return {f"{kind}/{k}": float(v) for k, v in record.items()
            if k not in ("kind", "step", "time") and isinstance(v, int | float) and not isinstance(v, bool)
            and math.isfinite(v)}


class TrackerLogger(Callback):
    """A trainer callback: init_trackers at start, log what the run store logs, end_training at the end."""

    def __init__(self, run_name: str, cfg_dict: dict):
        self.run_name = run_name
        self.cfg_dict = cfg_dict

    def on_train_start(self, state, control) -> None:
        state.accelerator.init_trackers(self.run_name, config=hparams(self.cfg_dict))

    def on_log(self, state, control, record: dict) -> None:
        state.accelerator.log(scalars(record), step=record["step"])

    def on_evaluate(self, state, control, metrics: dict) -> None:
        state.accelerator.log(scalars(metrics), step=metrics["step"])

    def on_train_end(self, state, control, outcome: str, error: str | None) -> None:
        state.accelerator.end_training()


def tensorboard_dir(run_path: str | Path) -> Path:
    """Where a run's TensorBoard events are: `tensorboard --logdir <this>`."""
    return Path(run_path) / "trackers"


def tensorboard_hint(run_path: str | Path) -> str:
    """One line for the Runs page and the CLI: how to open this run in TensorBoard."""
    logdir = tensorboard_dir(run_path)
    if any(logdir.glob("*/events.out.tfevents.*")):
        return f"Open in TensorBoard: `tensorboard --logdir {logdir}` (then http://localhost:6006)."
    return ("No TensorBoard events for this run: train with `--set runtime.report_to=tensorboard` (or add "
            "tensorboard to runtime.report_to on the Train page), then "
            f"`tensorboard --logdir {logdir}`.")
