"""The dashboard's core pages via Streamlit's AppTest, against a real tiny run launched like the app does."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from app import charts, tables  # noqa: E402
from app import config_form as F  # noqa: E402
from uegr import jobs  # noqa: E402
from uegr.config import build_config  # noqa: E402
from uegr.runs import RunStore  # noqa: E402

ENTRY = str(ROOT / "app" / "streamlit_app.py")
TIMEOUT = 60


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A runs folder with one tiny run trained by a real `python -m uegr.cli train` launched by uegr.jobs."""
    root = tmp_path_factory.mktemp("uegr_home")
    old = os.environ.get("UEGR_HOME")
    os.environ["UEGR_HOME"] = str(root)
    os.environ.setdefault("UEGR_DATA_DIR", "/work/shared/data")
    store = RunStore(root)
    run = jobs.start_run(build_config("tiny"), store, "fixture-tiny")
    final = jobs.wait_run(run, timeout=240)
    yield {"root": root, "store": store, "run": run, "final": final}
    if old is None:
        os.environ.pop("UEGR_HOME", None)
    else:
        os.environ["UEGR_HOME"] = old


def _app() -> AppTest:
    at = AppTest.from_file(ENTRY, default_timeout=TIMEOUT)
    at.run()
    return at


def _page(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_real_launch_completes(home):
    """The app's launcher really runs the CLI, detached, into the queued run and it completes."""
    assert home["final"]["state"] == "completed", home["run"].log_tail()
    run = home["run"]
    assert run.log_path.is_file() and "uegr.cli" in run.log_path.read_text()
    assert any(r["kind"] == "eval" for r in run.metrics())
    assert home["final"]["step"] == 6
    csv_text = tables.metrics_csv(run, "train")
    assert csv_text.splitlines()[0].startswith("kind,step") and len(csv_text.splitlines()) == 7


@pytest.mark.parametrize("page", ["home", "train", "live", "runs"])
def test_pages_render(home, page):
    at = _app()
    assert not at.exception, [e.value for e in at.exception]
    _page(at, page)
    if page == "live":
        charts_ = at.get("plotly_chart")
        assert len(charts_) >= 4  # losses, accuracy, lr, grad norm, rates, kept fractions
    if page == "runs":
        df = at.dataframe[0].value
        assert "fixture-tiny" in list(df["name"])
        assert at.get("download_button")


def test_invalid_values_show_field_error_and_start_nothing(home, monkeypatch):
    launched = []
    monkeypatch.setattr(jobs, "launch_run", lambda run, store, resume=False: launched.append(run.name) or 1)
    before = {r.name for r in home["store"].list()}
    at = _page(_app(), "train")
    at.number_input(key="cfg.method.p_min").set_value(0.5).run()  # above p_max = 0.3
    assert any("method.p_min" in e.value for e in at.error), [e.value for e in at.error]
    at.number_input(key="cfg.method.p_min").set_value(0.05)
    at.number_input(key="cfg.optim.lr").set_value(0.0).run()
    errs = [e.value for e in at.error]
    assert any("optim.lr" in e for e in errs) and not any("method.p_min" in e for e in errs)
    at.button(key="start").click().run()
    assert any("Nothing was started" in e.value for e in at.error)
    assert {r.name for r in home["store"].list()} == before and not launched


def test_start_creates_run_listed_in_runs(home, monkeypatch):
    launched = []
    monkeypatch.setattr(jobs, "launch_run", lambda run, store, resume=False: launched.append(run.name) or 1)
    at = _page(_app(), "train")
    at.selectbox(key="preset").set_value("tiny").run()
    assert at.number_input(key="cfg.optim.max_steps").value == 6
    at.text_input(key="ui_run_name").set_value("from-form").run()
    at.button(key="start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert launched == ["from-form"]
    run = home["store"].get("from-form")
    assert run.config().model.name == "tiny-bert" and run.raw_status()["state"] == "queued"
    assert at.session_state["live_runs"] == ["from-form"]  # Live opens on it
    _page(at, "runs")
    assert "from-form" in list(at.dataframe[0].value["name"])


def test_upload_is_saved_only_under_runs(tmp_path):
    up = tmp_path / "runs" / "_uploads"
    p = F.save_upload("../../etc/evil name.CSV", b"text,label\nhi,1\n", up)
    assert p.parent.parent == up.resolve() and p.name == "evil_name.csv"  # _uploads/<content hash>/name
    with pytest.raises(ValueError):
        F.save_upload("x.exe", b"1", up)
    with pytest.raises(ValueError):
        F.save_upload("big.csv", b"0" * (F.MAX_UPLOAD_BYTES + 1), up)


def test_smoothing():
    v = np.array([1.0, 3.0, 3.0, 3.0])
    e = charts.ema(v, 0.9)
    assert e[0] == 1.0 and 1.0 < e[1] < 3.0  # bias-corrected: starts at the first value, not near 0
    assert np.allclose(charts.moving_average(v, 2), [1.0, 2.0, 3.0, 3.0])
    assert np.array_equal(charts.smooth(v, "None"), v)


def test_jobs_wait_passively_unless_the_user_chose(monkeypatch):
    """Side-by-side jobs must not spin-wait on each other's cores; a user's own setting wins."""
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert jobs.child_env()["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert jobs.child_env()["OMP_WAIT_POLICY"] == "ACTIVE"
