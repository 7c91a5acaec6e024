"""The one job model (uegr/jobs.py): start, progress, stop, reap, listing, a killed child shown as
interrupted, and two app sessions seeing the same jobs. Real `uegr` commands on the tiny preset."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from uegr import jobs  # noqa: E402
from uegr.config import build_config  # noqa: E402
from uegr.runs import JobFolder, RunStore  # noqa: E402

LONG = ["optim.max_steps=5000", "runtime.eval_every=0"]  # a run that would take minutes: it gets stopped


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("UEGR_HOME", str(tmp_path))
    monkeypatch.setenv("UEGR_DATA_DIR", os.environ.get("UEGR_DATA_DIR", "/work/shared/data"))
    return RunStore(tmp_path)


def _until(pred, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_progress_stop_and_exit_helpers_in_the_job_process(tmp_path, monkeypatch):
    """What a command does inside a job: report progress with an ETA, see a stop request, record its exit."""
    folder = JobFolder(tmp_path / "job")
    folder.path.mkdir()
    monkeypatch.setenv(jobs.ENV_DIR, str(folder.path))
    monkeypatch.delenv(jobs.ENV_OWNER, raising=False)
    monkeypatch.setattr(jobs, "_first", None)
    jobs.claim()
    assert os.environ[jobs.ENV_OWNER] == str(os.getpid())
    jobs.report(0, 10, "start", every=0)
    time.sleep(0.05)
    jobs.report(4, 10, "four", every=0)
    p = folder.read(folder.progress_path)
    assert (p["step"], p["total"], p["message"]) == (4, 10, "four") and 0 < p["eta_s"] < 5
    jobs.report(5, 10, "throttled", every=60)  # within the throttle: not written...
    assert folder.read(folder.progress_path)["step"] == 4
    jobs.report(10, 10, "done", every=60)  # ...but the last step always is
    assert folder.read(folder.progress_path)["step"] == 10
    assert not jobs.stop_requested()
    folder.write(folder.stop_path, {"requested": time.time()})
    assert jobs.stop_requested()
    jobs.finish(0)
    assert folder.read(folder.exit_path)["state"] == "stopped"  # exit 0 after a stop request
    folder.stop_path.unlink()
    jobs.finish(0)
    assert folder.read(folder.exit_path)["state"] == "completed"
    monkeypatch.setattr(jobs, "_stopped", False)
    jobs.stopped()  # the command stopped on a request of its own (`uegr stop RUN` writes the run's STOP)
    jobs.finish(0)
    assert folder.read(folder.exit_path)["state"] == "stopped"
    jobs.finish(2)
    assert folder.read(folder.exit_path) == {**folder.read(folder.exit_path), "state": "failed", "code": 2}
    monkeypatch.setenv(jobs.ENV_OWNER, "1")  # a subprocess of the job (a sweep worker) never writes it
    folder.exit_path.unlink()
    jobs.finish(2)
    assert not folder.exit_path.exists()


def test_start_progress_listing_and_stop_of_a_training_job(store):
    run = jobs.start_run(build_config("tiny", None, LONG), store, "long")
    job = jobs.run_job(run)
    assert job is not None and job.labels == {"run": "long"} and job.spec["argv"][0] == "train"
    _until(lambda: (job.progress().get("step") or 0) >= 3, 120, "the first progress reports")
    info = job.info()
    assert info["state"] == "running" and info["total"] == 5000 and 0 < info["fraction"] < 1
    assert info["eta_s"] > 0 and "loss" in info["message"]
    assert [j.id for j in jobs.list_jobs(store)] == [job.id] == [j.id for j in jobs.active(store, "train")]
    assert jobs.list_jobs(store, "attack") == [] and jobs.list_jobs(store, run="other") == []
    assert jobs.run_state(run)["state"] == "running"
    jobs.stop_run(run)
    assert job.status()["state"] in ("stopping", "stopped")
    final = job.wait(90)
    assert final["state"] == "stopped" and final["code"] == 0
    assert jobs.run_state(run)["state"] == "stopped" and run.has_checkpoint("last")
    assert jobs.active(store) == []
    # Resume is the same launch with --resume: a second job of the run, listed first.
    again = jobs.resume_run(run, store)
    assert jobs.run_job(run).id == again.id and len(jobs.list_jobs(store, "train", run="long")) == 2
    _until(lambda: jobs.run_state(run)["state"] == "running", 120, "the resumed run")
    again.request_stop(force=True)  # SIGTERM fallback
    assert again.wait(60)["state"] == "stopped"


def test_a_killed_job_is_interrupted_never_running_forever(store):
    run = jobs.start_run(build_config("tiny", None, LONG), store, "killed")
    job = jobs.run_job(run)
    _until(lambda: (job.progress().get("step") or 0) >= 2, 120, "progress")
    os.killpg(job.spec["pid"], signal.SIGKILL)  # no exit state is written
    st = _until(lambda: job.status()["state"] != "running" and job.status(), 30, "the reaper")
    assert st["state"] == "interrupted" and st["reaped"] and "killed" in st["error"]
    assert job.folder.read(job.folder.exit_path)["state"] == "interrupted"  # recorded once, for every session
    assert jobs.active(store) == [] and jobs.run_state(run)["state"] == "interrupted"
    assert not job.request_stop()  # nothing to stop


def test_a_failing_command_is_failed_with_its_error(store):
    job = jobs.start(["train", "--preset", "no-such-preset"], store, "train", {"run": "x"})
    st = job.wait(60)
    assert st["state"] == "failed" and st["code"] == 2
    assert "no-such-preset" in job.info()["error"]


def test_two_app_sessions_see_the_same_jobs(store):
    """State is on disk: a job started by one session is listed, and stoppable, in another."""
    from pagetools import APP
    from streamlit.testing.v1 import AppTest

    run = jobs.start_run(build_config("tiny", None, LONG), store, "shared")
    job = jobs.run_job(run)
    sessions = []
    for _ in range(2):
        at = AppTest.from_file(APP, default_timeout=60)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        sessions.append(at)
    for at in sessions:
        table = at.dataframe[0].value
        assert list(table["job"]) == [job.id] and list(table["run / study"]) == ["shared"]
    _until(lambda: job.status()["state"] == "running", 60, "the job to run")
    b = sessions[1]
    b.run()
    b.button(key=f"home_jobs.stop.{job.id}").click().run()
    assert job.stop_requested()
    assert job.wait(90)["state"] == "stopped"
    a = sessions[0]
    a.run()
    assert list(a.dataframe[0].value["state"]) == ["stopped"]
