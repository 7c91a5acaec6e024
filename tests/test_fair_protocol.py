"""bench/fair_protocol.py (issue #18): the committed search spaces pass the config schema, and the driver's
plan (stages, exact commands, equal sweep budgets) is built without training or attacking anything."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from uegr.config import build_config
from uegr.sweep.space import SpaceError, load_space

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import fair_protocol as fp  # noqa: E402

SPACES = REPO / "bench" / "fair_spaces"


@pytest.mark.parametrize("method", fp.METHODS)
def test_committed_space_passes_the_schema_and_holds_the_defaults(method):
    base = build_config(None, None, fp.base_sets("sst2", fp.FULL["sst2"]) + [f"method.name={method}"])
    space = load_space(SPACES / f"{method}.yaml", base)  # the sweep library's own validator
    assert "optim.lr" in space and len(space) >= 2
    assert space["optim.lr"]["low"] <= 2e-4 <= space["optim.lr"]["high"]  # the earlier table's lr
    defaults = base  # the protocol's base: the method's defaults and lr 2e-4
    for name, spec in space.items():
        if "low" in spec:
            section, field = name.split(".", 1)
            value = getattr(getattr(defaults, section), field)
            if name == "method.adv_eps" and value == 0:
                value = defaults.method.resolved_adv_eps()
            assert spec["low"] <= value <= spec["high"], f"{method}: default {name}={value} outside the range"


def test_validator_rejects_a_bad_space(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("method.keep_ratio: {low: 0.0, high: 2.0}\n")
    with pytest.raises(SpaceError, match="method.keep_ratio"):
        load_space(bad, build_config(None, None, ["method.name=childtuning"]))


def test_plan_is_built_without_running_anything(tmp_path):
    runs = tmp_path / "runs"
    plan = fp.build_plan(fp.main.__globals__["argparse"].Namespace(
        runs_dir=str(runs), tasks="sst2,trec", tiny=False, gpu=True, seed=0, out="docs/results.md"))
    assert not runs.exists()  # nothing written, nothing trained
    stages = {s.stage for s in plan}
    assert stages == {"a", "b", "c", "d", "f", "g"}
    sweeps = [s for s in plan if s.stage == "a"]
    assert [s.name for s in sweeps] == [f"{t}-sweep-{m}" for t in ("sst2", "trec") for m in fp.METHODS]
    for task in ("sst2", "trec"):
        cmds = [s.argv for s in sweeps if s.name.startswith(task)]
        # equal tuning effort: the same trials, sampler, seed, step budget and objective for every method
        for flag in ("--trials", "--sampler", "--seed", "--budget-steps", "--objective"):
            assert len({c[c.index(flag) + 1] for c in cmds}) == 1, flag
        assert all("runtime.select_on=harmonic" in c and "runtime.robust_eval_recipe=deepwordbug" in c for c in cmds)
        n = int(next(o for o in cmds[0] if o.startswith("runtime.robust_eval_examples=")).split("=")[1])
        assert n >= 128
    # later stages wait on the sweeps (no best trial yet), and say so
    waiting = [s for s in plan if s.stage in "bcdf"]
    assert waiting and all(not s.argv and s.waiting_on for s in waiting)
    assert sum(1 for s in plan if s.stage == "d" and "-train-" in s.name) == 4 * fp.FULL["sst2"]["ablation_seeds"]
    assert "--report-only" in plan[-1].argv


def test_plan_cli_prints_json_and_marks_nothing_done(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "bench" / "fair_protocol.py"), "--plan", "--tiny",
                          "--runs-dir", str(tmp_path / "r")], capture_output=True, text=True, cwd=REPO, check=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    plan = json.loads(out.stdout)
    assert plan[0]["command"].count("--space") == 1 and "uegr.cli sweep" in plan[0]["command"]
    assert not any(p["done"] for p in plan)


def test_report_claims_only_intervals_that_exclude_zero():
    paired = ["| uegr − vanilla | +1.2 [-0.4, +2.8] | +3.0 [+0.6, +5.4] | -2.0 [-3.9, -0.1] |",
              "| uegr − roast | - | +0.0 [+0.0, +0.0] | +0.5 [-1.0, +2.0] |"]
    claims = fp.claim_lines(paired, ["deepwordbug", "textfooler-lite", "pwws"])
    assert claims == ["- uegr − vanilla, textfooler-lite: +3.0 [+0.6, +5.4] points (UEGR higher)",
                      "- uegr − vanilla, pwws: -2.0 [-3.9, -0.1] points (UEGR lower)"]


def _rec(test_acc, **under):
    return {"test_accuracy": test_acc, **{f"attack:{r}": {"accuracy_under_attack": a} for r, a in under.items()}}


def test_goal_check_needs_every_interval_above_zero_and_the_clean_margin():
    recipes = ["deepwordbug", "pwws"]
    rows = {"uegr": [_rec(0.850, deepwordbug=0.30, pwws=0.20)], "vanilla": [_rec(0.853, deepwordbug=0.20, pwws=0.15)],
            "roast": [_rec(0.860, deepwordbug=0.28, pwws=0.21)]}
    paired = ["| uegr − vanilla | +10.0 [+8.0, +12.0] | +5.0 [+3.0, +7.0] |",
              "| uegr − roast | +2.0 [+0.5, +3.5] | -1.0 [-2.5, +0.5] |"]
    lines = fp.goal_lines(rows, paired, recipes, ["vanilla", "roast", "uegr"])
    assert lines[0].startswith("- clean test accuracy: uegr 85.0, best roast 86.0 (gap 1.0 points): not within")
    assert lines[1].startswith("- deepwordbug: uegr 30.0 %; above 2 of 2 baselines")
    assert "above 1 of 2" in lines[2] and "not distinguishable from roast -1.0" in lines[2]
    assert lines[-1] == "- goal not met"
    # within the margin and above everyone: met; a baseline not attacked yet keeps it open
    rows["roast"] = [_rec(0.852, deepwordbug=0.28, pwws=0.18)]
    paired[1] = "| uegr − roast | +2.0 [+0.5, +3.5] | +2.0 [+0.1, +3.9] |"
    assert fp.goal_lines(rows, paired, recipes, ["vanilla", "roast", "uegr"])[-1] == "- goal met"
    assert fp.goal_lines(rows, paired, recipes, ["vanilla", "roast", "freelb", "uegr"])[-1] == \
        "- goal not met (not yet attacked: freelb)"
