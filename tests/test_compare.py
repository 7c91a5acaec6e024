"""uegr.compare on REAL tiny runs (trained by the CLI, one attacked by the CLI) and Pareto logic on synthetic points."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from uegr.attacks.runner import read_records
from uegr.compare import (
    BASE_COLUMNS,
    attack_key,
    attack_keys,
    comparison_table,
    paired_attack_differences,
    pareto_front,
    to_csv,
    to_markdown,
)
from uegr.runs import RunStore

ROOT = Path(__file__).resolve().parents[1]


def _cli(home: Path, *args: str) -> None:
    env = {**os.environ, "UEGR_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "uegr.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    home = tmp_path_factory.mktemp("cmp_runs")
    common = ["--preset", "tiny", "--quiet", "--set", "runtime.threads=1", "--set", "optim.max_steps=2",
              "--set", "runtime.eval_every=2"]
    _cli(home, "train", *common, "--name", "u1")
    _cli(home, "train", *common, "--name", "v1", "--set", "method.name=vanilla")
    _cli(home, "attack", "u1", "--recipe", "deepwordbug", "-n", "2", "--split", "test", "--query-budget", "200")
    return RunStore(home)


def test_table_from_real_runs(store):
    rows = {r["name"]: r for r in comparison_table(store.list())}
    assert set(rows) == {"u1", "v1"}
    u, v = rows["u1"], rows["v1"]
    assert list(u) == list(v)  # same columns for every run
    assert list(u)[:len(BASE_COLUMNS)] == BASE_COLUMNS
    assert u["method"] == "uegr" and v["method"] == "vanilla"
    assert u["k"] == 2 and u["p_range"] == "0.05-0.3" and u["adv_eps"] == pytest.approx(0.1)
    assert u["keep_ratio"] == pytest.approx(0.3) and u["lambda_adv"] == 1.0 and u["lambda_js"] == 1.0
    assert v["k"] is None and v["keep_ratio"] is None and v["adv_eps"] is None
    for r in (u, v):
        assert 0.0 <= r["clean_accuracy"] <= 1.0
        assert r["clean_accuracy"] == store.get(r["name"]).status()["best_score"]
        assert r["train_seconds"] > 0 and r["steps"] == 2
        assert r["hessian_top_eigenvalue"] is None and r["sharpness_sam"] is None  # not probed: None
    saved = store.get("u1").analyses("attack-")["attack-deepwordbug-test"]
    assert attack_keys([u, v]) == ["deepwordbug/test"]
    assert u["under_attack:deepwordbug/test"] == saved["accuracy_under_attack"]
    assert u["attacked_n:deepwordbug/test"] == 2
    assert u["robust_accuracy"] == saved["accuracy_under_attack"] and u["worst_attack"] == "deepwordbug/test"
    assert v["under_attack:deepwordbug/test"] is None and v["robust_accuracy"] is None


def test_paired_differences_use_the_sentences_both_runs_attacked(store, tmp_path):
    home = tmp_path / "paired"
    for name in ("u1", "v1"):
        shutil.copytree(store.get(name).path, home / name)
    # v1 attacked on 3 sentences: the seeded order makes its first 2 the 2 that u1 was attacked on
    _cli(home, "attack", "v1", "--recipe", "deepwordbug", "-n", "3", "--split", "test", "--query-budget", "200")
    copy = RunStore(home)
    u, v = copy.get("u1"), copy.get("v1")
    (row,) = paired_attack_differences(u, v, resamples=500)
    recs_u = {r["index"]: r["result"] == "failed" for r in read_records(u.analyses_dir / "attack-deepwordbug-test")}
    recs_v = {r["index"]: r["result"] == "failed" for r in read_records(v.analyses_dir / "attack-deepwordbug-test")}
    shared = set(recs_u) & set(recs_v)
    assert len(recs_v) == 3 and len(shared) == 2 == row["shared"]
    assert row["attack"] == "deepwordbug/test" and row["note"] == ""
    assert row["a"] == pytest.approx(sum(recs_u[i] for i in shared) / 2)
    assert row["b"] == pytest.approx(sum(recs_v[i] for i in shared) / 2)
    assert row["difference"] == pytest.approx(row["a"] - row["b"])
    assert row["low"] <= row["difference"] <= row["high"]
    (back,) = paired_attack_differences(v, u, resamples=500)
    assert back["difference"] == pytest.approx(-row["difference"])

    # a different query budget is another experiment: reported, not compared
    summary = v.analyses("attack-")["attack-deepwordbug-test"]
    v.write_analysis("attack-deepwordbug-test", {**summary, "query_budget": 50})
    (row,) = paired_attack_differences(u, v)
    assert row["difference"] is None and row["note"] == "settings differ: query_budget"


def test_landscape_and_second_attack_and_garbage(store):
    run = store.get("v1")
    # shaped like uegr.landscape.probe_run's records
    run.write_analysis("landscape-hessian", {"kind": "hessian", "eigenvalues": [3.5, 1.25], "trace": 12.0})
    run.write_analysis("landscape-sharpness", {"kind": "sharpness", "sam": {"sharpness": 0.02, "rho": 0.05},
                                               "eps": {"sharpness": 0.5, "eps": 1e-3}})
    run.write_analysis("attack-pwws-validation", {"accuracy_under_attack": 0.25, "attack_success_rate": 0.5,
                                                  "avg_perturbed_word_pct": 10.0, "num_examples": 4})
    run.write_analysis("attack-textfooler-lite-test", {"accuracy_under_attack": 0.5, "attack_success_rate": None,
                                                       "avg_perturbed_word_pct": float("nan"), "num_examples": 4})
    (run.analyses_dir / "attack-broken-test.json").write_text("{not json", encoding="utf-8")
    try:
        v = {r["name"]: r for r in comparison_table(store.list())}["v1"]
        assert v["hessian_top_eigenvalue"] == 3.5 and v["hessian_trace"] == 12.0
        assert v["sharpness_sam"] == 0.02 and v["sharpness_eps"] == 0.5
        assert v["robust_accuracy"] == 0.25 and v["worst_attack"] == "pwws/validation"
        assert v["perturbed_pct:textfooler-lite/test"] is None  # NaN -> None
        assert v["success_rate:textfooler-lite/test"] is None
    finally:
        for n in ("landscape-hessian", "landscape-sharpness", "attack-pwws-validation", "attack-textfooler-lite-test",
                  "attack-broken-test"):
            (run.analyses_dir / f"{n}.json").unlink()


def test_exports(store):
    rows = comparison_table(store.list())
    text = to_csv(rows)
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert [p["name"] for p in parsed] == [r["name"] for r in rows]
    assert parsed[0]["clean_accuracy"] == str(rows[0]["clean_accuracy"])
    md = to_markdown(rows).splitlines()
    assert md[0].startswith("| name | method |") and md[1].startswith("| --- |")
    assert len(md) == 2 + len(rows)
    assert to_markdown([{"a": "x|y", "b": None}]) == "| a | b |\n| --- | --- |\n| x\\|y |  |\n"
    json.dumps(rows)  # JSON-serialisable


def test_attack_key():
    assert attack_key("attack-deepwordbug-test") == "deepwordbug/test"
    assert attack_key("attack-textfooler-lite-file-my_data") == "textfooler-lite-file/my_data"
    assert attack_key("attack-checklist-lite-validation") == "checklist-lite/validation"


def test_pareto_front_synthetic():
    pts = [(0.90, 0.10), (0.85, 0.40), (0.80, 0.40), (0.70, 0.60), (0.60, 0.55), (0.90, 0.05), (None, 0.9),
           (0.5, float("nan"))]
    assert pareto_front(pts) == [3, 1, 0]  # sorted by clean accuracy
    assert pareto_front([]) == []
    assert pareto_front([(0.5, 0.5)]) == [0]
    assert pareto_front([(0.5, 0.5), (0.5, 0.5)]) == [0, 1]  # ties both stay
    assert pareto_front([(0.1, 0.1), (0.2, 0.2), (0.3, 0.3)]) == [2]
    # brute-force check on a grid
    import itertools
    grid = [(x / 4, y / 4) for x, y in itertools.product(range(5), repeat=2)][::3]
    front = set(pareto_front(grid))
    for i, (x, y) in enumerate(grid):
        dominated = any(a >= x and b >= y and (a, b) != (x, y) for a, b in grid)
        assert (i in front) == (not dominated)
