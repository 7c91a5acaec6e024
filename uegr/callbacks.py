"""What a training callback sees (TrainerState) and how it steers the loop (TrainerControl), as in Hugging
Face's TrainerState / TrainerControl: callbacks get these two, never the trainer.

Hooks, in the order the loop calls them:
    on_train_start(state, control)
    on_mask_refresh(state, control, step)        the selective update's mask changed (also before step 1
                                                 when a method's data pass set it, e.g. CHILD-TUNING_D)
    on_log(state, control, record)               a train metrics record (every runtime.log_every steps)
    on_step_end(state, control)                  every step, before the loop acts on `control`
    on_evaluate(state, control, metrics)
    on_robust_eval(state, control, record)       a robust-accuracy record (uegr.robust_eval)
    on_checkpoint(state, control, path)
    on_train_end(state, control, outcome, error)  outcome: completed | stopped | failed

After `on_step_end` the loop evaluates when `control.should_evaluate`, checkpoints when
`control.should_checkpoint` (the trainer sets both on its own schedule; a callback may add to them) and
stops when `control.should_stop`, saving checkpoints/last first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainerState:
    """Where training stands. The counters are the trainer's own (it reads and writes them here); the
    handles at the end are for callbacks that need the model or the accelerator (robust evaluation,
    trackers, mask snapshots) and are read-only by convention."""

    cfg: Any = None  # uegr.config.Config
    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    steps_per_epoch: int = 1
    best_score: float | None = None  # of runtime.select_on
    metrics: dict = field(default_factory=dict)  # the last train record
    last_eval: dict = field(default_factory=dict)  # the last evaluation (without kind/time)
    world_size: int = 1
    is_main_process: bool = True
    device: str = "cpu"
    attn_implementation: str = "sdpa"
    error_trace: str | None = None  # set when training failed
    # handles
    run: Any = None  # uegr.runs.Run or None
    model: Any = None  # the unwrapped model being trained
    updater: Any = None  # uegr.saliency.SelectiveUpdater or None
    dataset: Any = None  # uegr.data.TextDataset
    accelerator: Any = None


@dataclass
class TrainerControl:
    """Requests from callbacks to the loop; the loop resets the flags once it has acted on them."""

    should_stop: bool = False
    should_evaluate: bool = False
    should_checkpoint: bool = False
    # A callback that measured a better checkpoint than the live weights (robust evaluation on a CPU copy)
    # asks for it to become checkpoints/best: (score, step, model holding those weights, metric name).
    new_best: tuple[float, int, Any, str] | None = None
    # Records a callback produced for the other callbacks (robust-accuracy records): the trainer passes
    # each to every callback's on_robust_eval.
    robust_records: list[dict] = field(default_factory=list)


class Callback:
    """Override the hooks you need (see the module docstring)."""

    def on_train_start(self, state: TrainerState, control: TrainerControl) -> None: ...
    def on_mask_refresh(self, state: TrainerState, control: TrainerControl, step: int) -> None: ...
    def on_log(self, state: TrainerState, control: TrainerControl, record: dict) -> None: ...
    def on_step_end(self, state: TrainerState, control: TrainerControl) -> None: ...
    def on_evaluate(self, state: TrainerState, control: TrainerControl, metrics: dict) -> None: ...
    def on_robust_eval(self, state: TrainerState, control: TrainerControl, record: dict) -> None: ...
    def on_checkpoint(self, state: TrainerState, control: TrainerControl, path: Path) -> None: ...
    def on_train_end(self, state: TrainerState, control: TrainerControl, outcome: str, error: str | None) -> None: ...
