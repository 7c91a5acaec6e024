"""bench/prune_replay.py: replaying pruners on recorded learning curves counts steps as a live study would."""

import sys
from pathlib import Path

import optuna

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import prune_replay as pr  # noqa: E402

STUCK = {5: 0.42, 10: 0.58, 15: 0.58, 20: 0.58}
LEARNS = {5: 0.62, 10: 0.70, 15: 0.75, 20: 0.78}


def _trials(*curves):
    return [{"trial": i, "curve": dict(c), "steps": 20, "value": max(c.values())} for i, c in enumerate(curves)]


def test_no_pruner_runs_every_step_and_keeps_the_best_checkpoint():
    out = pr.replay(_trials(LEARNS, STUCK, LEARNS), optuna.pruners.NopPruner(), eval_every=5)
    assert out == {"total_steps": 60, "pruned": 0, "best": 0.78}


def test_a_pruner_stops_stuck_trials_at_the_evaluation_it_rejects_them():
    pruner = optuna.pruners.PercentilePruner(25.0, n_startup_trials=1, n_warmup_steps=0)
    out = pr.replay(_trials(LEARNS, STUCK, STUCK, LEARNS), pruner, eval_every=5)
    # both stuck trials are below the one complete learning trial at step 5: stopped there
    assert out == {"total_steps": 20 + 5 + 5 + 20, "pruned": 2, "best": 0.78}


def test_coarser_evaluations_use_only_those_steps():
    out = pr.replay(_trials({**LEARNS, 15: 0.9}), optuna.pruners.NopPruner(), eval_every=10)
    assert out["best"] == 0.78  # the 0.9 at step 15 is not an evaluation at every 10 steps
