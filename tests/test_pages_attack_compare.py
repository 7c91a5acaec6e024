"""The Attack lab and Compare pages against REAL tiny runs (trained here by the CLI, tiny preset).

Attacking a typed sentence through the page runs DeepWordBug and Captum on the tiny random BERT; the
slice attack runs the real `uegr attack` CLI as a background job started by the page's button.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pagetools import open_page
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app" / "streamlit_app.py")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _train(home: Path, name: str, *sets: str) -> None:
    cmd = [sys.executable, "-m", "uegr.cli", "train", "--preset", "tiny", "--name", name, "--quiet",
           "--set", "runtime.threads=1", "--set", "optim.max_steps=2", "--set", "runtime.eval_every=2",
           *[a for s in sets for a in ("--set", s)]]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "UEGR_HOME": str(home)}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("atk_runs")
    _train(home, "tiny-uegr")
    _train(home, "tiny-vanilla", "method.name=vanilla")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UEGR_HOME", str(home))
        yield home
    from uegr import jobs
    from uegr.runs import RunStore
    for job in jobs.active(RunStore(home)):  # never leave an attack process behind
        job.request_stop(force=True)


def _page(path: str):
    return open_page(path, 300)


def _md(at: AppTest) -> str:
    return "\n".join(str(m.value) for m in at.markdown)


def test_attack_page_typed_sentence(home):
    at = _page("../pages/attack.py")
    assert at.multiselect(key="atk_models").value == ["tiny-vanilla", "tiny-uegr"]  # baseline first
    assert "deepwordbug" in at.selectbox(key="atk_recipe").options[0]
    assert "textfooler" not in " ".join(at.selectbox(key="atk_recipe").options).replace("textfooler-lite", "")
    assert "~~textfooler~~" in _md(at)  # unavailable recipes are listed with their reason

    at.button(key="atk_go").click()
    at.run()
    assert not at.exception
    assert any("empty" in w.value for w in at.warning)

    recipe = at.selectbox(key="atk_recipe")
    if "textfooler-lite" in recipe.options:  # one sentence: a word-swap recipe that flips short sentences
        assert recipe.value == "textfooler-lite"
    assert at.slider(key="atk_maxp").value == 1.0  # no cap: 0.3 of 5 words = 2 words, most attacks fail
    recipe.set_value("deepwordbug")  # the fastest to build on tiny models
    at.text_area(key="atk_text").input("a <b>gripping</b> & beautifully acted film")
    at.number_input(key="atk_steps").set_value(16)
    at.button(key="atk_go").click()
    t0 = time.time()
    at.run(timeout=300)
    print(f"page attack of 2 models: {time.time() - t0:.1f} s")
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    results = at.session_state["atk_results"]
    assert [r["model"].split(" · ")[0] for r in results] == ["tiny-vanilla", "tiny-uegr"]
    for r in results:
        rec = r["record"]
        assert rec["result"] in ("successful", "failed", "skipped") and rec["num_queries"] >= 1
        assert r["attr_orig"]["target"] == rec["original_prediction"] == r["attr_adv"]["target"]
        assert r["attr_orig"]["steps"] == 16
        assert rec["words_changed"] == sum(c for _, c in rec["original_words"])  # the badge's count = the diff
    md = _md(at)
    assert "&lt;b&gt;" in md and "&amp;" in md and "<b>" not in md  # user text is escaped
    assert "for the target class" in md and "Original" in md
    assert md.count("title=\"+") + md.count("title=\"-") >= 2 * 2 * 5  # attributions: 2 models x 2 sentences
    assert len(at.metric) == 4  # before/after x 2 models
    assert sum("convergence delta" in c.value for c in at.caption) == 4


def test_attack_page_pick_from_data(home):
    at = _page("../pages/attack.py")
    at.radio(key="atk_src").set_value("Pick one from a run's data")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="atk_data_split").value in ("validation", "test")
    assert at.text_area(key="atk_text").value  # the picked example fills the sentence
    assert any("True label" in c.value for c in at.caption)


def test_attack_slice_job_and_compare(home):
    from app import attack_jobs as aj
    from uegr.runs import RunStore

    at = _page("../pages/attack.py")
    at.selectbox(key="atk_job_run").select("tiny-uegr")
    at.number_input(key="atk_job_n").set_value(2)
    at.number_input(key="atk_job_budget").set_value(200)
    at.run()
    at.button(key="atk_job_start").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    run = RunStore(home).get("tiny-uegr")
    store = RunStore(home)
    job = aj.attack_status(run, store, "deepwordbug", "test")
    assert job is not None and job["n"] == 2 and job["job"].log_path.is_file()
    job["job"].wait(300)
    job = aj.attack_status(run, store, "deepwordbug", "test")
    assert job["state"] == "completed", job["log_tail"]
    assert job["done"] == job["total"] == 2
    assert job["job"].progress()["step"] == 2  # reported by the CLI (uegr.jobs.report), not scraped from tqdm

    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(s.value.startswith("deepwordbug on test: 2 examples") for s in at.success)
    table = at.dataframe[0].value
    assert list(table["analysis"]) == ["attack-deepwordbug-test"]
    examples = at.dataframe[1].value  # one row per attacked sentence
    assert list(examples.columns[:5]) == ["#", "result", "changes", "original", "adversarial"]
    assert len(examples) == 2 and set(examples["result"]) <= {"flipped", "held", "already wrong"}
    assert any("Run the same attack" in c.value for c in at.caption)  # no second run attacked yet

    cmp = _page("../pages/compare.py")
    rows = cmp.dataframe[0].value
    assert set(rows["name"]) == {"tiny-uegr", "tiny-vanilla"}
    assert "under_attack:deepwordbug/test" in rows.columns
    assert any("Pareto front" in c.value for c in cmp.caption)
    cmp.text_input(key="cmp_sentence").input("a dull, lifeless film")
    cmp.run()
    assert not cmp.exception, [e.value for e in cmp.exception]
    assert {m.label for m in cmp.metric} == {"tiny-uegr", "tiny-vanilla"}
    cmp.selectbox(key="cmp_robust").select("deepwordbug/test")
    cmp.radio(key="cmp_bar_metric").set_value("success_rate")
    cmp.run()
    assert not cmp.exception, [e.value for e in cmp.exception]
    assert any("No attack was run on both" in i.value for i in cmp.info)

    # once the vanilla run is attacked on the same sentences, the page pairs them
    proc = subprocess.run([sys.executable, "-m", "uegr.cli", "attack", "tiny-vanilla", "--recipe", "deepwordbug",
                           "-n", "2", "--split", "test", "--query-budget", "200"], cwd=ROOT,
                          env={**os.environ, "UEGR_HOME": str(home)}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cmp.selectbox(key="cmp_reference").select("tiny-uegr")
    cmp.run()
    assert not cmp.exception, [e.value for e in cmp.exception]
    scatter = json.loads(cmp.get("plotly_chart")[0].proto.spec)
    labels = [a["text"] for a in scatter["layout"]["annotations"]]
    assert len(labels) == 2 and all("n = " in t and "val" in t and "test" in t for t in labels)
    at.selectbox(key="atk_job_run").select("tiny-uegr")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="atk_gallery_other").value == "tiny-vanilla"
    assert any("holds," in m.value and "flips" in m.value for m in at.markdown)
    paired = cmp.dataframe[1].value
    assert list(paired["run"]) == ["tiny-vanilla"] and list(paired["reference"]) == ["tiny-uegr"]
    assert list(paired["attack"]) == ["deepwordbug/test"] and list(paired["shared"]) == [2]
    assert paired["difference"][0] == pytest.approx(paired["a"][0] - paired["b"][0])


def test_attack_job_stop(home):
    from app import attack_jobs as aj
    from uegr.runs import RunStore

    store = RunStore(home)
    run = store.get("tiny-vanilla")
    job = aj.start_attack(run, store, "deepwordbug", 500, "validation", query_budget=5000)
    time.sleep(1.0)
    assert aj.attack_status(run, store, "deepwordbug", "validation")["state"] in ("starting", "running")
    with pytest.raises(RuntimeError, match="already running"):
        aj.start_attack(run, store, "deepwordbug", 500, "validation")
    assert job.request_stop()
    st = job.wait(60)  # the CLI polls the stop request between examples, keeps the finished ones
    assert st["state"] == "stopped" and st["code"] == 130, st
    assert not job.request_stop()  # nothing running any more
