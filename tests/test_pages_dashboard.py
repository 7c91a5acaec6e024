"""AppTests of issue 16's page changes: the Train form (method first, only its knobs, every invalid field,
preview, limits, estimate), Runs (filter, tags and notes, clone and edit), one colour per run on Live and
Compare, Home's markers and quick demo. Run folders are written in the trainer's own format."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
pytest.importorskip("streamlit")

from pagetools import open_page  # noqa: E402
from test_dashboard_views import _run_with_metrics  # noqa: E402

from app import colours  # noqa: E402
from uegr import jobs  # noqa: E402
from uegr.runs import RunStore, read_annotations  # noqa: E402


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash_home")
    store = RunStore(root)
    _run_with_metrics(store, "dash-uegr", "uegr")
    _run_with_metrics(store, "dash-vanilla", "vanilla")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UEGR_HOME", str(root))
        mp.setenv("UEGR_DATA_DIR", str(ROOT.parent / "shared" / "data"))
        yield store


def _texts(at) -> str:
    parts = [str(e.value) for kind in ("markdown", "caption", "error", "info", "success") for e in getattr(at, kind)]
    return "\n".join(parts)


def _figures(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_train_method_first_only_its_knobs_and_every_error(home, monkeypatch):
    launched = []
    monkeypatch.setattr(jobs, "launch_run", lambda run, store, resume=False: launched.append(run.name) or 1)
    at = open_page("../pages/train.py")
    assert [t.label for t in at.tabs][:2] == ["Method", "Data"]
    method = at.radio(key="cfg.method.name")
    assert method.label == "Method" and "Vanilla" in method.options
    assert at.number_input(key="cfg.method.k").label == "Sub-models (K)"  # labels in words
    assert "`method.k`" in at.number_input(key="cfg.method.k").help  # the field name in the tooltip
    at.number_input(key="cfg.method.k").set_value(5)
    method.set_value("vanilla").run()
    keys = {w.key for w in at.number_input} | {w.key for w in at.checkbox} | {w.key for w in at.selectbox}
    assert not [k for k in keys if k and k.startswith("cfg.method.")], "vanilla shows another method's knobs"
    assert "no knobs of its own" in _texts(at)

    at.number_input(key="cfg.optim.lr").set_value(0.0)
    at.number_input(key="cfg.data.max_length").set_value(2).run()
    errors = [e.value for e in at.error]
    assert any("`optim.lr`" in e for e in errors) and any("`data.max_length`" in e for e in errors)
    assert any("2 fields to fix" in e for e in errors)
    at.button(key="start").click().run()
    assert any("Nothing was started" in e.value for e in at.error) and not launched

    at.number_input(key="cfg.optim.lr").set_value(2e-4)
    at.number_input(key="cfg.data.max_length").set_value(48).run()
    text = _texts(at)
    assert "1,600 of 10,246 training examples" in text and "about" in text  # preset limit + estimate
    assert "train 10,246" in text and "negative" in text  # dataset preview: sizes and classes
    assert "quick-demo" in text and "training examples (0 = all) = 1600" in text  # the preset's limits, shown
    at.text_input(key="ui_run_name").set_value("form-vanilla").run()
    at.button(key="start").click().run()
    assert launched == ["form-vanilla"]
    saved = home.get("form-vanilla").config()
    assert saved.method.name == "vanilla" and saved.method.k == 3  # the edited UEGR knob was not carried


def test_train_mrpc_fills_the_pair_columns(home):
    if not (ROOT.parent / "shared" / "data" / "mrpc").is_dir():
        pytest.skip("MRPC is not in the data folder")
    at = open_page("../pages/train.py")
    at.radio(key="ui.data_kind").set_value("Data folder").run()
    at.selectbox(key="ui.named").set_value("mrpc").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "#2 String" in at.text_input(key="ui.fixed.mrpc.text_pair_column").value
    assert "sentence pairs" in _texts(at) and "paraphrase" in _texts(at)
    assert any("limits still apply" in i.value for i in at.info)  # not silently carried over


def test_runs_filter_tags_and_clone(home):
    at = open_page("../pages/runs.py")
    assert {"lr", "K", "robust accuracy", "tags"} <= set(at.dataframe[0].value.columns)
    at.text_input(key="runs_search").set_value("dash-van").run()
    assert list(at.dataframe[0].value["name"]) == ["dash-vanilla"]
    at.text_input(key="runs_search").set_value("").run()
    at.selectbox(key="runs_pick").set_value("dash-uegr").run()
    at.text_input(key="runs_tags_in.dash-uegr").set_value("baseline, keep")
    at.text_area(key="runs_notes_in.dash-uegr").set_value("first try")
    at.button(key="runs_ann_save").click().run()  # submits the form
    assert read_annotations(home.get("dash-uegr")) == {"tags": ["baseline", "keep"], "notes": "first try"}
    at.multiselect(key="runs_tags").set_value(["keep"]).run()
    assert list(at.dataframe[0].value["name"]) == ["dash-uegr"]
    at.button(key="runs_clone").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["cfg_clone_of"] == "dash-uegr"
    assert at.number_input(key="cfg.optim.max_steps").value == 6  # the tiny run's settings, prefilled
    assert at.radio(key="cfg.method.name").value == "uegr"
    assert any("Prefilled from run" in i.value for i in at.info)


def test_one_colour_per_run_on_live_and_compare(home):
    at = open_page("../pages/live.py")
    at.multiselect(key="live_select").set_value(["dash-uegr", "dash-vanilla"]).run()
    live = {t.get("meta"): t["line"]["color"] for f in _figures(at) for t in f["data"]
            if t.get("meta") and f["layout"]["title"]["text"].startswith("Loss")}
    assert live == {n: colours.run_colour(n) for n in ("dash-uegr", "dash-vanilla")}
    div = next(f for f in _figures(at) if f["layout"]["title"]["text"].startswith("Divergence"))
    assert div["layout"]["yaxis"]["type"] == "log"  # JS on its own, readable axis
    cmp = open_page("../pages/compare.py")
    curves = {t.get("meta"): t["line"]["color"] for f in _figures(cmp) for t in f["data"] if t.get("meta")}
    assert curves == live


def test_home_demo_first_and_markers(home):
    at = open_page("../pages/home.py")
    labels = [b.label for b in at.button]
    assert labels[0] == "Start the quick demo"
    text = _texts(at)
    assert "flatter loss landscape" not in text.replace("A flatter loss", "")
    assert "not reproduced here" in text and "project choice" in text
