"""The Saliency and Learn pages render against REAL runs (made here by the CLI, tiny preset).

The Learn page runs its step on the tiny random BERT (UEGR_LEARN_MODEL=tiny-bert) so this stays fast.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pagetools import open_page
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app" / "streamlit_app.py")


def _train(home: Path, name: str, *sets: str) -> None:
    cmd = [sys.executable, "-m", "uegr.cli", "train", "--preset", "tiny", "--name", name, "--quiet",
           "--set", "runtime.threads=1", *[a for s in sets for a in ("--set", s)]]
    env = {**os.environ, "UEGR_HOME": str(home)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("runs")
    _train(home, "tiny-uegr", "optim.max_steps=6")  # mask refreshes (and snapshots) at steps 1, 3, 5
    _train(home, "tiny-vanilla", "method.name=vanilla", "optim.max_steps=3")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UEGR_HOME", str(home))
        mp.setenv("UEGR_LEARN_MODEL", "tiny-bert")
        yield home
    torch.set_num_threads(threads)


def _page(path: str):
    return open_page(path, 180)


def _texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error") for e in at.get(kind)]
    return "\n".join(str(p) for p in parts)


def test_snapshots_are_real_and_iou_exact(home):
    from uegr.runs import RunStore
    from uegr.weights import iou_summary, mask_iou

    run = RunStore(home).get("tiny-uegr")
    assert run.snapshot_steps() == [1, 3, 5]
    recs = mask_iou(run)
    assert recs and all(r["exact"] for r in recs)
    overall = [s for s in iou_summary(recs) if s["layer"] == "all"]
    assert [s["step"] for s in overall] == [3, 5] and all(0 <= s["iou"] <= 1 for s in overall)


def test_saliency_page_renders_real_snapshots(home):
    at = _page("../pages/saliency.py")
    assert at.selectbox(key="sal_run").value == "tiny-uegr"
    assert list(at.select_slider(key="sal_step").options) == ["1", "3", "5"]
    headers = [h.value for h in at.header]
    assert "One matrix up close" in headers and any("IoU" in h for h in headers)
    text = _texts(at)
    assert "Exact: intersection / union" in text
    assert "elements kept" in text
    assert len(at.get("plotly_chart")) >= 6  # heatmap, 2 tiles, kept over time, IoU, 2 weight-change maps
    # another refresh, another colouring, another matrix
    at.select_slider(key="sal_step").set_value(1).run()
    at.radio(key="sal_metric").set_value("saliency mass").run()
    at.toggle(key="sal_others").set_value(True).run()
    at.selectbox(key="sal_tile_kind").set_value("ffn_in").run()
    assert not at.exception
    table = at.dataframe[-1].value
    assert set(table["run"]) == {"tiny-uegr", "tiny-vanilla"}


def test_saliency_page_empty_states(home, tmp_path, monkeypatch):
    at = _page("../pages/saliency.py")
    at.selectbox(key="sal_run").set_value("tiny-vanilla").run()
    assert not at.exception
    assert any("no saliency snapshots: it used a method without selective update" in i.value for i in at.info)
    monkeypatch.setenv("UEGR_HOME", str(tmp_path / "empty"))
    at = _page("../pages/saliency.py")
    assert any("No runs" in i.value for i in at.info)


def test_learn_page_renders_and_reacts(home):
    at = _page("../pages/learn.py")
    assert [h.value for h in at.header][:6] == ["1 · Clean pass", "2 · Adversarial perturbation",
                                               "3 · K sub-models with adaptive dropout", "4 · Losses",
                                               "5 · Saliency and the mask", "6 · The update"]
    text = _texts(at)
    assert "The paper's words" in text and "This project's default" in text

    def metric(label):
        return next(m.value for m in at.metric if m.label == label)

    js_before = metric("L_JS")
    at.slider(key="learn_k").set_value(5).run()
    assert not at.exception and metric("L_JS") != js_before
    at.toggle(key="learn_adv").set_value(False).run()
    at.toggle(key="learn_selective").set_value(False).run()
    assert not at.exception
    assert any("adversary is off" in i.value for i in at.info)
    assert any("Selective update is off" in i.value for i in at.info)
