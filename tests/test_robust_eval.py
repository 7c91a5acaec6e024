"""Live robust accuracy: logged at the configured steps, picks checkpoints/best with select_on=robust, drawn on
Live. A tiny real BERT, real attacks (DeepWordBug) on the built-in data."""

import numpy as np
import pytest
import torch

from uegr.attacks import attack_dataset, select_indices
from uegr.config import ConfigError, build_config
from uegr.data import load_dataset
from uegr.models import load_checkpoint
from uegr.runs import RunStore
from uegr.trainer import RunRecorder, Trainer


def test_robust_acc_at_configured_steps_and_select_on_robust_picks_that_checkpoint(runs_dir, monkeypatch):
    from uegr import robust_eval

    # A 4-step tiny model is not above the majority share, so the chance floor (tested below) would score
    # every checkpoint 0; switch it off to test the selection itself.
    monkeypatch.setattr(robust_eval, "CHANCE_MARGIN", -1.0)
    cfg = build_config("tiny", overrides=[
        "optim.max_steps=4", "runtime.eval_every=2", "runtime.robust_eval_every=2", "runtime.robust_eval_examples=8",
        "runtime.robust_eval_budget=60", "runtime.select_on=robust", "optim.lr=3e-3"])
    run = RunStore(runs_dir).create(cfg, "rob")
    trainer = Trainer(cfg, run=run, callbacks=[RunRecorder(run)])
    result = trainer.fit()
    assert result["state"] == "completed"

    robust = run.metrics("robust")
    assert [r["step"] for r in robust] == [2, 4]
    for r in robust:
        assert {"robust_acc", "attack_success", "avg_queries", "robust_eval_seconds"} <= set(r)
        assert r["n"] == 8 and r["split"] == "validation" and 0 <= r["robust_acc"] <= r["clean_acc"] <= 1
    best = max(robust, key=lambda r: r["robust_acc"])  # first maximum wins, as in the callback
    st = run.status()
    assert st["best_metric"] == "robust" and st["best_step"] == best["step"]
    assert st["best_score"] == pytest.approx(best["robust_acc"])

    # the attacks beside training never change training itself: the same run without them is identical
    plain_cfg = build_config("tiny", overrides=["optim.max_steps=4", "runtime.eval_every=2", "optim.lr=3e-3"])
    plain = RunStore(runs_dir).create(plain_cfg, "plain")
    Trainer(plain_cfg, run=plain, callbacks=[RunRecorder(plain)]).fit()
    assert [r["loss"] for r in plain.metrics("train")] == [r["loss"] for r in run.metrics("train")]
    assert [e["loss"] for e in plain.metrics("eval")] == [e["loss"] for e in run.metrics("eval")]

    # checkpoints/best holds exactly the weights that were attacked at best_step: attacking it again on the
    # same seeded validation subset reproduces that record, query for query.
    ds = load_dataset(cfg.data)
    val = ds.splits["validation"]
    idx = select_indices(len(val), 8, cfg.data.split_seed)
    model, tok = load_checkpoint(run.checkpoint_dir("best"), "sdpa")
    np.random.seed(cfg.data.split_seed)
    again = attack_dataset(model, tok, [val.texts[i] for i in idx], [val.labels[i] for i in idx], "deepwordbug",
                           n=None, seed=cfg.data.split_seed, query_budget=60)
    assert again["accuracy_under_attack"] == pytest.approx(best["robust_acc"])
    assert again["clean_accuracy"] == pytest.approx(best["clean_acc"])
    assert again["avg_queries"] == pytest.approx(best["avg_queries"])
    if best["step"] != 4:
        last, _ = load_checkpoint(run.checkpoint_dir("last"), "sdpa")
        assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), last.state_dict().values()))

    # Live draws robust accuracy beside clean validation accuracy
    from app import charts

    series = charts.RunSeries(run)
    series.update()
    figs = dict(charts.live_figures([series], "None", 0.9, 20))
    names = [t.name for t in figs["Validation accuracy"].data]
    assert len(names) == 2 and names[1] == "robust (under attack)"  # clean accuracy, then robust
    assert list(figs["Validation accuracy"].data[1].x) == [2, 4]


def test_select_on_robust_without_robust_evaluations_is_a_config_error():
    with pytest.raises(ConfigError, match="runtime.select_on"):
        build_config("tiny", overrides=["runtime.select_on=harmonic"])
    with pytest.raises(ConfigError, match="runtime.robust_eval_recipe"):
        build_config("tiny", overrides=["runtime.robust_eval_every=2", "runtime.robust_eval_recipe=nope"])


def test_a_model_no_better_than_the_majority_class_scores_zero():
    """Measured on SST-2: an untrained-looking trial (clean 0.517, robust 0.521; dev majority share 0.509) had
    out-scored every model that learned (clean 0.75, robust 0.25) on the harmonic mean."""
    from uegr.robust_eval import harmonic, selection_score
    from uegr.sweep.study import objective_value

    chance = 444 / 872
    assert harmonic(0.517, 0.521, chance) == 0.0
    assert harmonic(0.75, 0.25, chance) == pytest.approx(0.375)
    assert harmonic(0.517, 0.521) == pytest.approx(0.519, abs=1e-3)  # no chance known: plain harmonic mean
    assert selection_score("robust", 0.517, 0.521, chance) == 0.0
    assert selection_score("robust", 0.75, 0.25, chance) == 0.25
    assert selection_score("clean", 0.517, 0.521, chance) == 0.517
    degenerate = {"clean_acc": 0.517, "robust_acc": 0.521, "harmonic": 0.0, "chance": chance}
    assert objective_value("robust_acc", degenerate) == 0.0 and objective_value("clean_acc", degenerate) == 0.517
