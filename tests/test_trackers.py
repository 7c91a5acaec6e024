"""runtime.report_to: TensorBoard event files, read back with TensorBoard's own reader, hold exactly what
metrics.jsonl holds (same names, steps and values); a missing tracker package is named."""

import pytest

from uegr.config import ConfigError, build_config
from uegr.runs import RunStore
from uegr.trackers import scalars, tensorboard_hint


def test_tensorboard_events_match_metrics_jsonl(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from uegr.trainer import RunRecorder, Trainer

    cfg = build_config("tiny", overrides=["optim.max_steps=4", "runtime.eval_every=2", "runtime.report_to=tensorboard",
                                          "runtime.device=cpu"])
    run = RunStore(tmp_path).create(cfg, "tb")
    Trainer(cfg, run=run, callbacks=[RunRecorder(run)]).fit()

    expected = {}
    for rec in run.metrics():
        for tag, value in scalars(rec).items():
            expected[(tag, rec["step"])] = value
    assert ("train/loss", 4) in expected and ("eval/accuracy", 2) in expected and ("train/js", 1) in expected

    acc = EventAccumulator(str(run.path / "trackers" / "tb"), size_guidance={"scalars": 0}).Reload()
    got = {(tag, e.step): e.value for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-7), key
    hp = (run.path / "trackers" / "tb").glob("*/events.out.tfevents.*")  # add_hparams writes a sub-run
    assert any(hp)
    assert f"tensorboard --logdir {run.path / 'trackers'}" in tensorboard_hint(run.path)  # the Runs page's line
    assert "runtime.report_to=tensorboard" in tensorboard_hint(tmp_path / "no-such-run")


def test_unknown_or_missing_tracker_is_named(tmp_path, monkeypatch):
    import importlib.util

    from uegr.trainer import Trainer

    with pytest.raises(ConfigError, match="runtime.report_to"):
        build_config("tiny", overrides=["runtime.report_to=tensorbored"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "mlflow" else real(n, *a))
    cfg = build_config("tiny", overrides=["runtime.report_to=tensorboard,mlflow"])
    with pytest.raises(ValueError, match="install mlflow"):
        Trainer(cfg, run=RunStore(tmp_path).create(cfg, "x"))
