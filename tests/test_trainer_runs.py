"""Trainer + run store + CLI end to end on a tiny real BERT and the built-in data."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from uegr.cli import main
from uegr.config import build_config
from uegr.runs import MetricsReader, RunStore
from uegr.trainer import Callback, RunRecorder, Trainer

REPO = Path(__file__).resolve().parents[1]


def _env(runs_dir):
    env = dict(os.environ, UEGR_HOME=str(runs_dir), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return env


def test_cli_train_leaves_a_complete_run_folder(runs_dir, capsys):
    assert main(["train", "--preset", "tiny", "--name", "r1", "--json", "--set", "optim.max_steps=4",
                 "--set", "runtime.eval_every=2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["state"] == "completed" and out["step"] == 4
    run = RunStore(runs_dir).get("r1")
    st = run.status()
    assert st["state"] == "completed" and st["step"] == 4 and st["total_steps"] == 4
    cfg = run.config()
    assert cfg.method.name == "uegr" and cfg.model.name == "tiny-bert"
    train = run.metrics("train")
    evals = run.metrics("eval")
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert {"loss", "clean", "adv", "js", "rate_0", "rate_1", "lr", "grad_norm", "examples_per_s", "eta_s",
            "kept_fraction", "kept_l0", "kept_l1"} <= set(train[-1])
    assert [e["step"] for e in evals] == [2, 4]
    assert {"accuracy", "macro_f1", "loss", "mcc", "f1"} <= set(evals[-1])
    for which in ("last", "best"):
        folder = run.checkpoint_dir(which)
        assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
        assert not list(folder.glob("*.bin"))
    assert (run.checkpoint_dir("last") / "trainer_state.pt").is_file()
    assert run.snapshot_steps() == [1, 3]  # refresh_every=2 in the tiny preset: steps 0 and 2 -> after 1, 3
    snap = run.read_snapshot(3, with_maps=True)
    assert snap["tensors"] and any(k.startswith("mask/") for k in snap["maps"])
    labels = json.loads((run.checkpoint_dir("best") / "config.json").read_text())["id2label"]
    assert labels == {"0": "negative", "1": "positive"}

    assert main(["predict", "r1", "a gorgeous, witty film", "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert pred[0]["label"] in ("negative", "positive") and abs(sum(pred[0]["probabilities"].values()) - 1) < 1e-5
    assert main(["eval", "r1", "--split", "test", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["n"] == 32 and 0 <= ev["accuracy"] <= 1
    assert main(["runs", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["name"] == "r1" and listed[0]["state"] == "completed"


def test_cli_errors_are_one_line_messages(runs_dir, capsys):
    assert main(["train", "--preset", "tiny", "--set", "method.k=0"]) == 2
    err = capsys.readouterr().err
    assert "method.k" in err and "Traceback" not in err
    assert main(["predict", "nope", "hi"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    assert main(["train", "--preset", "tiny", "--set", "model.name=/no/such/model", "--name", "bad"]) == 2
    err = capsys.readouterr().err
    assert "Could not load" in err
    assert not (runs_dir / "bad").exists()  # refused before its run folder was made


class StopAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, state, control):
        control.should_stop |= state.step >= self.step


def test_resume_continues_step_count_and_gives_the_same_next_loss(runs_dir):
    overrides = ["optim.max_steps=6", "runtime.eval_every=0", "runtime.checkpoint_every=3",
                 "method.refresh_every=2", "method.rate_rule=feedback", "method.freeze_moments=true"]
    cfg = build_config("tiny", None, overrides)
    store = RunStore(runs_dir)
    full = store.create(cfg, "full")
    Trainer(cfg, run=full, callbacks=[RunRecorder(full)]).fit()

    part = store.create(cfg, "part")
    result = Trainer(cfg, run=part, callbacks=[RunRecorder(part), StopAt(3)]).fit()
    assert result["state"] == "stopped" and result["step"] == 3
    assert part.status()["state"] == "stopped"
    resumed = Trainer(part.config(), run=part, callbacks=[RunRecorder(part)], resume=True)
    assert resumed.step == 3
    resumed.fit()
    a = {r["step"]: r for r in full.metrics("train")}
    b = {r["step"]: r for r in part.metrics("train")}
    assert sorted(b) == [1, 2, 3, 4, 5, 6]
    for step in (4, 5, 6):
        for key in ("loss", "clean", "adv", "js", "rate_0", "kept_fraction"):
            assert a[step][key] == pytest.approx(b[step][key], rel=1e-5, abs=1e-7), (step, key)
    wa = torch.load(full.checkpoint_dir("last") / "trainer_state.pt", weights_only=True)["step"]
    assert wa == 6


def test_stop_request_ends_cleanly_with_checkpoint(runs_dir):
    cfg = build_config("tiny", None, ["optim.max_steps=50", "runtime.eval_every=0"])
    run = RunStore(runs_dir).create(cfg, "stopme")

    class RequestStop(Callback):
        def on_log(self, state, control, record):
            if record["step"] == 2:
                run.request_stop()

    result = Trainer(cfg, run=run, callbacks=[RunRecorder(run), RequestStop()]).fit()
    assert result["state"] == "stopped" and result["step"] == 2
    assert run.status()["state"] == "stopped" and run.has_checkpoint("last")


def test_failure_mid_training_is_recorded(runs_dir):
    cfg = build_config("tiny", None, ["optim.max_steps=10"])
    run = RunStore(runs_dir).create(cfg, "boom")

    class Explode(Callback):
        def on_log(self, state, control, record):
            if record["step"] == 2:
                raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError):
        Trainer(cfg, run=run, callbacks=[RunRecorder(run), Explode()]).fit()
    st = run.status()
    assert st["state"] == "failed" and "simulated crash" in st["error"]
    assert len(run.metrics("train")) == 2
    assert "simulated crash" in run.log_tail()


def test_kill_9_leaves_a_readable_run_shown_as_interrupted(runs_dir):
    proc = subprocess.Popen([sys.executable, "-m", "uegr.cli", "train", "--preset", "tiny", "--name", "victim",
                             "--quiet", "--set", "optim.max_steps=100000", "--set", "runtime.eval_every=0"],
                            env=_env(runs_dir), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = runs_dir / "victim" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or metrics.read_text().count("\n") < 3):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run = RunStore(runs_dir).get("victim")
    assert run.raw_status()["state"] == "running"  # nobody wrote a final status...
    st = run.status()
    assert st["state"] == "interrupted" and "resume" in st["error"]  # ...but readers see the truth
    assert len(run.metrics("train")) >= 3
    assert RunStore(runs_dir).list()[0].summary()["state"] == "interrupted"


def test_metrics_reader_is_incremental_and_tolerates_torn_lines(tmp_path):
    path = tmp_path / "m.jsonl"
    reader = MetricsReader(path)
    assert reader.poll() == []
    path.write_text('{"step": 1}\n{"step": 2}\n{"ste')
    assert [r["step"] for r in reader.poll()] == [1, 2]
    with path.open("a") as fh:
        fh.write('p": 3}\n')
    assert [r["step"] for r in reader.poll()] == [3]
    with path.open("a") as fh:
        fh.write('garbage\n{"step": 4}\n')
    assert [r["step"] for r in reader.poll()] == [4]
    assert len(reader.records) == 4


@pytest.mark.slow
def test_two_process_accelerate_launch_gives_identical_masks(runs_dir):
    # --multi_gpu selects the torchrun launcher; with no GPU each rank runs on the CPU (gloo).
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--multi_gpu", "-m", "uegr.cli", "train",
           "--preset", "tiny", "--name", "ddp", "--quiet", "--set", "optim.max_steps=4",
           "--set", "method.refresh_every=1", "--set", "runtime.eval_every=0"]
    res = subprocess.run(cmd, env=_env(runs_dir), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    run = RunStore(runs_dir).get("ddp")
    assert run.status()["state"] == "completed" and run.status()["world_size"] == 2
    masks = run.metrics("mask")
    assert len(masks) == 4
    for rec in masks:
        assert len(rec["checksums"]) == 2 and rec["checksums"][0] == rec["checksums"][1] != 0


def test_a_diverging_loss_fails_the_run_with_advice(runs_dir):
    from uegr.trainer import TrainingDiverged

    cfg = build_config("tiny", overrides=["optim.max_steps=4"])
    store = RunStore(runs_dir)
    run = store.create(cfg, "nan")
    trainer = Trainer(cfg, run=run, callbacks=[RunRecorder(run)])
    real_step = trainer.method.step

    def step_then_explode(batch, ctx):
        parts = real_step(batch, ctx)
        return {**parts, "loss": float("nan")} if ctx.step == 1 else parts

    trainer.method.step = step_then_explode
    with pytest.raises(TrainingDiverged, match="optim.lr"):
        trainer.fit()
    st = run.status()
    assert st["state"] == "failed" and "step 2" in st["error"] and "optim.lr" in st["error"]
    assert [r["step"] for r in run.metrics("train")] == [1, 2]  # the bad step is still recorded


def test_callbacks_steer_the_loop_through_control_and_methods_choose_attention(runs_dir):
    from uegr.callbacks import TrainerState
    from uegr.trainer import attn_implementation_for

    cfg = build_config("tiny", None, ["optim.max_steps=6", "runtime.eval_every=0", "runtime.checkpoint_every=0"])
    run = RunStore(runs_dir).create(cfg, "steer")

    class Steer(Callback):
        saved: list = []

        def on_step_end(self, state, control):
            assert isinstance(state, TrainerState) and state.total_steps == 6
            if state.step == 2:
                control.should_evaluate = control.should_checkpoint = True
            control.should_stop |= state.step == 3

        def on_checkpoint(self, state, control, path):
            self.saved.append(state.step)

    result = Trainer(cfg, run=run, callbacks=[RunRecorder(run), Steer()]).fit()
    assert result["state"] == "stopped" and result["step"] == 3
    assert [e["step"] for e in run.metrics("eval")] == [2]  # asked for at step 2; the schedule's (step 6) never came
    assert Steer.saved == [2, 2, 3]  # best (its first evaluation) and last at step 2; last when stopping at 3
    # The method says which attention it needs (per-block attention dropout: eager), unless the config says.
    assert attn_implementation_for(build_config("tiny")) == "eager"
    assert attn_implementation_for(build_config("tiny", None, ["method.dropout_targets=hidden"])) == "sdpa"
    assert attn_implementation_for(build_config("tiny", None, ["method.name=rdrop"])) == "eager"
    assert attn_implementation_for(build_config("tiny", None, ["method.name=vanilla"])) == "sdpa"
    assert attn_implementation_for(build_config("tiny", None, ["model.attn_implementation=sdpa"])) == "sdpa"
