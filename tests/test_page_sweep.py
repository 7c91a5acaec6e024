"""The Sweep page (AppTest): the search-space form validates ranges, Start runs a real tiny `uegr sweep` as a
background job, the study's figures and trials table fill in, a trial opens in Live."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
pytest.importorskip("streamlit")
pytest.importorskip("optuna")

from pagetools import open_page  # noqa: E402

from app import sweep_view as sv  # noqa: E402
from uegr import jobs  # noqa: E402
from uegr.runs import RunStore  # noqa: E402
from uegr.sweep.space import SpaceError  # noqa: E402

PAGE = "../pages/sweep.py"


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("UEGR_HOME", str(tmp_path))
    monkeypatch.setenv("UEGR_DATA_DIR", os.environ.get("UEGR_DATA_DIR", "/work/shared/data"))
    yield RunStore(tmp_path)
    for job in jobs.active(RunStore(tmp_path)):
        job.request_stop(force=True)


def test_space_form_shows_only_the_methods_knobs_and_validates_ranges(home):
    at = open_page(PAGE)
    assert any("No study yet" in i.value for i in at.info)
    at.selectbox(key="sw_method").set_value("rdrop").run()
    labels = [c.label for c in at.checkbox if c.key.startswith("sw.rdrop.") and c.key.endswith(".on")]
    assert len(labels) == 2 and any("method.rdrop_alpha" in x for x in labels) and any("optim.lr" in x for x in labels)
    assert at.number_input(key="sw.rdrop.method.rdrop_alpha.low").value == pytest.approx(0.1)  # the default space
    at.number_input(key="sw.rdrop.method.rdrop_alpha.low").set_value(9.0).run()  # above high = 5
    assert any("method.rdrop_alpha" in e.value and "below" in e.value for e in at.error), [e.value for e in at.error]
    assert at.button(key="sw_start").disabled
    at.number_input(key="sw.rdrop.method.rdrop_alpha.low").set_value(0.5).run()
    assert not at.error and not at.button(key="sw_start").disabled


def test_start_a_tiny_sweep_watch_it_and_open_a_trial_in_live(home):
    at = open_page(PAGE)
    at.selectbox(key="sw_preset").set_value("tiny").run()
    at.text_input(key="sw_study").set_value("page-tiny")
    at.multiselect(key="sw_objectives").set_value(["clean_acc"])
    at.number_input(key="sw_trials").set_value(2)
    at.number_input(key="sw_budget").set_value(4)
    at.run()
    at.button(key="sw_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    job = jobs.latest(home, "sweep", study="page-tiny")
    assert job is not None and job.spec["argv"][:3] == ["sweep", "--study", "page-tiny"]
    assert "--budget-steps" in job.spec["argv"] and home.sweep_space_path("page-tiny").is_file()
    final = job.wait(300)
    assert final["state"] == "completed", job.log_tail(30)
    assert job.progress()["step"] == 2 and job.progress()["total"] == 2  # trials done, reported by the worker

    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="sw_pick").value == "page-tiny"
    charts = at.get("plotly_chart")
    assert len(charts) >= 3  # history, parallel coordinates, slices (importances need a spread of values)
    table = at.dataframe[0].value
    assert list(table["trial"]) == [0, 1] and set(table["state"]) == {"complete"}
    assert all(r.startswith("page-tiny-t000") for r in table["run"])
    study = sv.load_study(home, "page-tiny")
    history = sv.figures(study)["history"]
    assert sum(len(t.x) for t in history.data if t.x is not None) >= 2  # the history has a point per trial
    at.selectbox(key="sw_trial").set_value(1).run()
    at.button(key="sw_compare").click().run()  # Compare opens on this trial's run and the study's others
    assert not at.exception, [e.value for e in at.exception]
    assert at.multiselect(key="cmp_runs").value == ["page-tiny-t0001", "page-tiny-t0000"] and not at.warning
    at.switch_page(PAGE).run()
    at.selectbox(key="sw_trial").set_value(1).run()
    at.button(key="sw_live").click().run()
    assert at.session_state["live_runs"] == ["page-tiny-t0001"]


def test_stop_and_resume_a_sweep_from_the_page(home):
    from optuna.trial import TrialState

    argv = sv.new_study_argv(home, "stoppable", "tiny", "vanilla", {"optim.lr": {"low": 1e-4, "high": 1e-3}},
                             ["clean_acc"], trials=2, budget_steps=80)
    job = sv.start_sweep(home, "stoppable", argv)
    with pytest.raises(Exception, match="already running"):
        sv.start_sweep(home, "stoppable", argv)
    run_status = home.root / "stoppable-t0000" / "status.json"
    end = time.time() + 240
    while time.time() < end and not (run_status.is_file() and '"running"' in run_status.read_text()):
        time.sleep(0.2)
    at = open_page(PAGE)
    assert at.selectbox(key="sw_pick").value == "stoppable"
    at.button(key="sw_stop").click().run()
    final = job.wait(120)
    assert final["state"] == "stopped", job.log_tail(30)
    study = sv.load_study(home, "stoppable")
    assert [t.state for t in study.trials] == [TrialState.FAIL]  # the running trial ends failed, none started after
    assert home.get("stoppable-t0000").status()["state"] == "stopped"  # its run stopped cleanly (checkpoint kept)

    at.run()
    at.button(key="sw_resume").click().run()
    again = jobs.latest(home, "sweep", study="stoppable")
    assert again.id != job.id and "--retry-failed" in again.spec["argv"]
    assert again.wait(300)["state"] == "completed", again.log_tail(30)
    study = sv.load_study(home, "stoppable")
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 2


def test_trial_zero_as_the_preset_setting_is_checked_against_the_edited_ranges(home):
    space = {"optim.lr": {"low": 1e-4, "high": 3e-3}}
    argv = sv.new_study_argv(home, "eb-ok", "tiny", "vanilla", space, ["clean_acc"], trials=2, enqueue_base=True)
    assert argv[-1] == "--enqueue-base"  # tiny's lr 1e-3 lies inside
    assert "--enqueue-base" not in sv.new_study_argv(home, "eb-off", "tiny", "vanilla", space, ["clean_acc"], trials=2)
    with pytest.raises(SpaceError, match="optim.lr=0.001"):
        sv.new_study_argv(home, "eb-out", "tiny", "vanilla", {"optim.lr": {"low": 1e-5, "high": 5e-4}},
                          ["clean_acc"], trials=2, enqueue_base=True)


def test_pruner_options_are_validated_on_the_form(home):
    at = open_page(PAGE)
    at.selectbox(key="sw_pruner").set_value("halving").run()
    at.text_input(key="sw_pruner_options").set_value("bootstrap_count=1").run()
    assert not at.error and not at.button(key="sw_start").disabled
    at.text_input(key="sw_pruner_options").set_value("bootstrap=1").run()
    assert any("bootstrap_count" in e.value for e in at.error) and at.button(key="sw_start").disabled


def test_a_study_with_every_trial_pruned_points_at_the_trial_to_promote():
    import optuna
    from optuna.trial import TrialState

    study = optuna.create_study(direction="maximize")
    study.set_user_attr(sv.STUDY_ATTR, {"objectives": ["clean_acc"]})
    for last in (0.6, 0.7):
        t = study.ask({"optim.lr": optuna.distributions.FloatDistribution(1e-4, 1e-3, log=True)})
        t.report(last, 10)
        study.tell(t, state=TrialState.PRUNED)
    hint = sv.all_pruned_hint(study)
    assert hint and "trial is 1 " in hint and "0.7000 at step 10" in hint
    study.tell(study.ask(), 0.5)
    assert sv.all_pruned_hint(study) is None
