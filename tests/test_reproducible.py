"""Same command, same seed, same result bit for bit on CPU: training, evaluation, attacks, landscape probes.

Each is run twice in one process with every global random source disturbed in between (Python's random,
numpy, torch), so a source the code forgets to seed shows up as a difference.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from uegr.cli import main

SETS = ["--set", "optim.max_steps=3", "--set", "runtime.eval_every=3", "--set", "data.max_train_examples=48"]
VOLATILE = ("time", "seconds", "examples_per_s", "created", "updated", "heartbeat", "elapsed", "wall", "path",
            "run", "records", "step_time", "avg_seconds", "load_seconds", "eta")


def _disturb(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    random.random(), np.random.rand(7), torch.rand(3)


def _stable(obj):
    """A record without wall-clock fields (times differ between two identical runs)."""
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if not any(w in k for w in VOLATILE)}
    if isinstance(obj, list):
        return [_stable(v) for v in obj]
    return obj


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    runs = tmp_path_factory.mktemp("repro_runs")
    for name, disturb in (("first", 1), ("second", 2)):
        _disturb(disturb)
        assert main(["train", "--preset", "tiny", "--name", name, "--quiet", "--runs-dir", str(runs), *SETS]) == 0
    return runs


def test_training_is_bit_for_bit_reproducible(two_runs):
    a, b = (load_file(str(two_runs / n / "checkpoints" / "last" / "model.safetensors")) for n in ("first", "second"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    recs = [[_stable(json.loads(ln)) for ln in (two_runs / n / "metrics.jsonl").read_text().splitlines()]
            for n in ("first", "second")]
    assert recs[0] == recs[1] and any(r.get("kind") == "train" for r in recs[0])


def test_evaluation_is_reproducible(two_runs, capsys):
    outs = []
    for n in ("first", "second"):
        assert main(["eval", n, "--runs-dir", str(two_runs), "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        out.pop("checkpoint", None)  # the checkpoint's path names the run, which differs by design
        outs.append(_stable(out))
    assert outs[0] == outs[1] and outs[0]["n"] > 0


def test_attack_is_reproducible_with_numpy_disturbed(tmp_path, sst2_sentences, tiny_model, tokenizer):
    from uegr.attacks import attack_dataset, read_records

    texts, labels = sst2_sentences
    out = []
    for disturb in (3, 4):
        _disturb(disturb)  # TextAttack's character edits draw from numpy's global generator
        attack_dataset(tiny_model.eval(), tokenizer, texts, labels, recipe="deepwordbug", n=4, seed=0,
                       query_budget=300, max_perturb_fraction=None, out_dir=tmp_path / str(disturb))
        out.append([_stable(r) for r in read_records(tmp_path / str(disturb))])
    assert len(out[0]) == 4 and out[0] == out[1]  # perturbed texts, queries, results: all equal
    assert any(r["perturbed_text"] != r["original_text"] for r in out[0]), "no edit was drawn: nothing compared"


@pytest.fixture(scope="module")
def probe_target(two_runs):
    from uegr.data import load_dataset
    from uegr.runs import RunStore

    run = RunStore(two_runs).get("first")
    return run, load_dataset(run.config().data).splits["validation"]


@pytest.mark.parametrize("kind,settings", [("slice1d", {"points": 3, "examples": 16}),
                                           ("hessian", {"iters": 2, "samples": 2, "examples": 8, "params": "encoder"}),
                                           ("sharpness", {"examples": 8, "steps": 1})])
def test_landscape_probe_is_reproducible(probe_target, kind, settings):
    from uegr.landscape import probe_run

    run, split = probe_target
    out = []
    for disturb in (5, 6):
        _disturb(disturb)
        out.append(_stable(probe_run(run.best_checkpoint(), kind, settings, data=split)))
    assert out[0] == out[1]
