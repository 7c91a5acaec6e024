"""The Landscape page against REAL tiny runs with REAL probe results.

The module fixture trains two tiny runs with the CLI, runs `uegr landscape` (the CLI's own entry point,
in-process to save the start-up of seven more interpreters) for slice1d, slice2d, hessian, sharpness and
interp with small settings, and runs one more probe as a real detached background job through the
page's launcher. The page test that presses Start mocks the subprocess launch with a harmless sleeper.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pagetools import open_page
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app" / "streamlit_app.py")
PAGE = "../pages/landscape.py"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app import landscape_view as lv  # noqa: E402
from uegr import jobs  # noqa: E402

RUNS = ("tiny-uegr", "tiny-vanilla")


def _train_cmd(name: str, *sets: str) -> list[str]:
    return [sys.executable, "-m", "uegr.cli", "train", "--preset", "tiny", "--name", name, "--quiet",
            "--set", "runtime.threads=1", "--set", "optim.max_steps=2", "--set", "runtime.eval_every=2",
            *[a for s in sets for a in ("--set", s)]]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    from uegr.cli import main
    from uegr.runs import RunStore

    home = tmp_path_factory.mktemp("ls_runs")
    env = {**os.environ, "UEGR_HOME": str(home)}
    procs = [subprocess.Popen(_train_cmd(RUNS[0]), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT),
             subprocess.Popen(_train_cmd(RUNS[1], "method.name=vanilla"), cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)]
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out.decode()[-2000:]
    store = RunStore(home)
    # One real background job through the page's launcher, running while the in-process probes run.
    bg = lv.launch_probe(store.get(RUNS[1]), "slice1d", {"examples": 16, "points": 5, "span": 0.5},
                         runs_dir=home)
    small = ["--examples", "16", "--no-progress", "--runs-dir", str(home)]
    for name in RUNS:
        for args in (["--kind", "slice2d", "--points", "3"], ["--kind", "hessian", "--iters", "3", "--samples", "2"],
                     ["--kind", "sharpness"]):
            assert main(["landscape", name, *small, *args]) == 0, (name, args)
    assert main(["landscape", RUNS[0], *small, "--kind", "slice1d", "--points", "5", "--span", "0.5"]) == 0
    assert main(["landscape", RUNS[0], *small, "--kind", "interp", "--points", "5", "--other", RUNS[1]]) == 0
    final = lv.wait(store.get(RUNS[1]), "slice1d", timeout=300)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UEGR_HOME", str(home))
        yield {"home": home, "store": store, "bg": bg, "bg_final": final}


def _page(timeout: float = 120):
    return open_page(PAGE, timeout)


def _infos(at: AppTest) -> str:
    return "\n".join(str(m.value) for m in at.info)


def test_background_probe_ran_for_real(home):
    st = home["bg_final"]
    assert st is not None and st["state"] == "completed", st and (st["state"], st["log_tail"])
    rec = lv.results(home["store"].get(RUNS[1]))["slice1d"]
    assert rec["settings"]["points"] == 5 and len(rec["losses"]) == 5 and rec["n_examples"] == 16
    # progress came from the CLI itself (uegr.jobs.report), not from its log
    assert (st["step"], st["total"]) == (5, 5) and st["message"] == "slice1d: 5/5" and st["fraction"] == 1.0
    assert st["command"].startswith(f"uegr landscape {RUNS[1]} --kind slice1d")


def test_page_shows_real_probe_numbers(home):
    at = _page()
    assert set(at.multiselect(key="ls_runs").value) == set(RUNS)
    assert "Estimated cost" in _infos(at)  # shown before anything starts
    assert "No probes yet" not in _infos(at)
    df = at.dataframe[0].value.set_index("run")
    for name in RUNS:
        res = lv.results(home["store"].get(name))
        assert set(res) >= {"slice1d", "slice2d", "hessian", "sharpness"}
        assert df.loc[name, "top eigenvalue"] == lv.show(res["hessian"]["eigenvalues"][0])
        assert df.loc[name, "Hessian trace"] == lv.show(res["hessian"]["trace"])
        assert df.loc[name, "SAM sharpness"] == lv.show(res["sharpness"]["sam"]["sharpness"])
        assert df.loc[name, "ε-sharpness"] == lv.show(res["sharpness"]["eps"]["sharpness"])
        assert df.loc[name, "1-D max rise"] == lv.show(res["slice1d"]["max_increase"])
    assert float(df.loc[RUNS[0], "interp barrier"]) == pytest.approx(
        lv.interp_barrier(lv.results(home["store"].get(RUNS[0]))["interp"]), rel=1e-3)
    charts = at.get("plotly_chart")
    assert len(charts) == 4  # 1-D overlay, contour, surface, interpolation
    assert "No interpolation yet for tiny-vanilla" in _infos(at)


def test_start_probe_launches_job_and_stop(home, monkeypatch):
    launched: list[list[str]] = []
    real_popen = subprocess.Popen

    def fake_popen(cmd, **kw):  # a harmless sleeper stands in for the probe process
        launched.append(list(cmd))
        return real_popen([sys.executable, "-c", "import time; time.sleep(60)"], **kw)

    monkeypatch.setattr(jobs.subprocess, "Popen", fake_popen)
    at = _page()
    at.selectbox(key="ls_kind").set_value("hessian")
    at.run()
    at.number_input(key="ls_iters").set_value(4)
    at.number_input(key="ls_samples").set_value(3)
    at.run()
    assert "Estimated cost" in _infos(at)
    at.button(key="ls_start").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    try:
        assert len(launched) == 2
        for cmd in launched:
            i = cmd.index("landscape")
            assert cmd[i + 2:i + 4] == ["--kind", "hessian"]
            assert cmd[cmd.index("--iters") + 1] == "4" and cmd[cmd.index("--samples") + 1] == "3"
        assert any("Started hessian" in str(s.value) for s in at.success)
        assert len(at.get("progress")) >= 2
        assert at.button(key="ls_start").disabled  # the same probe cannot start twice
        at.button(key=f"ls_stop.{RUNS[0]}.hessian").click()
        at.run()
        run = home["store"].get(RUNS[0])
        assert lv.probe_status(run, "hessian")["job"].stop_requested()
        assert lv.probe_status(run, "hessian")["state"] == "stopping"
    finally:
        for name in RUNS:
            job = lv.probe_status(home["store"].get(name), "hessian")
            if job:
                try:
                    os.kill(job["pid"], signal.SIGTERM)
                except ProcessLookupError:
                    pass
        jobs.reap()


def test_empty_state_for_run_without_probes(home, tmp_path, monkeypatch):
    import shutil

    src = home["store"].get(RUNS[0]).path
    shutil.copytree(src, tmp_path / "fresh-run", ignore=shutil.ignore_patterns("analyses"))
    monkeypatch.setenv("UEGR_HOME", str(tmp_path))
    at = _page()
    assert "No probes yet for **fresh-run** — start one above." in _infos(at)
    assert not at.get("plotly_chart")


def test_interp_barrier_and_calibration():
    rec = {"loss": 1.0, "alphas": [-0.25, 0.125, 0.5, 0.875, 1.25], "losses": [1.1, 1.0, 3.0, 1.9, 2.2]}
    assert lv.interp_barrier(rec) == pytest.approx(3.0 - (1.9 + (2.2 - 1.9) / 3))  # L(1) read off the curve
    assert lv.interp_barrier({"loss": 1.0, "alphas": [0.0, 0.5], "losses": [1.0, 1.2]}) is None  # stopped early
    assert lv.calibration([None, {"seconds": 4.0, "estimated_seconds": 0.2}]) == pytest.approx(20.0)
    assert lv.calibration([None]) is None


# ---------------------------------------------------------------- history, table cells, running state, tabs
def _tabs_default(at: AppTest) -> str | None:
    """The label of the tab the page opens on (the tab container's default)."""
    stack = [at._tree]
    while stack:
        node = stack.pop()
        if getattr(node, "type", None) == "tab_container":
            tc = node.proto.tab_container
            labels = [c.label for c in node.children.values()]
            return tc.default_tab_label or labels[tc.default_tab_index]
        stack.extend(getattr(node, "children", {}).values())
    return None


def test_history_keeps_every_probe_and_the_selector_shows_an_earlier_one(home):
    from uegr.cli import main

    run = home["store"].get(RUNS[0])
    before = lv.history(run, "slice1d")
    assert main(["landscape", RUNS[0], "--examples", "8", "--no-progress", "--runs-dir", str(home["home"]),
                 "--kind", "slice1d", "--points", "3", "--span", "0.25"]) == 0
    after = lv.history(run, "slice1d")
    assert len(after) == len(before) + 1  # the earlier result is kept, not replaced
    newest, older = after[0], after[1]
    assert newest["settings"]["points"] == 3 and older["settings"]["points"] == 5
    assert lv.results(run)["slice1d"]["settings"]["points"] == 3  # the latest file is the newest result
    at = _page()
    sel = at.selectbox(key=f"ls_hist.{RUNS[0]}.slice1d")
    assert sel.options[0].startswith(time_prefix(newest)) and len(sel.options) == len(after)
    df = at.dataframe[0].value.set_index("run")
    assert df.loc[RUNS[0], "1-D max rise"] == lv.show(newest["max_increase"])
    assert df.loc[RUNS[0], "loss on"] == "8 validation ex. (slice1d)"  # the loss says what it was computed on
    assert any("different data" in str(w.value) for w in at.warning)  # 8 vs 16 examples across rows
    sel.set_value(older["history_id"]).run()
    df = at.dataframe[0].value.set_index("run")
    assert df.loc[RUNS[0], "1-D max rise"] == lv.show(older["max_increase"])
    assert _tabs_default(at) == "1-D slices"  # the newest result is a 1-D slice


def time_prefix(rec: dict) -> str:
    return lv.history_label(rec).split(" · ")[0]


def test_table_cells_never_show_a_literal_none(home, tmp_path, monkeypatch):
    import shutil

    src = home["store"].get(RUNS[0]).path
    dst = tmp_path / "only-sharp"
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns("analyses"))
    from uegr.cli import main

    assert main(["landscape", dst.name, "--examples", "8", "--no-progress", "--runs-dir", str(tmp_path),
                 "--kind", "sharpness", "--rho", "0.01"]) == 0
    monkeypatch.setenv("UEGR_HOME", str(tmp_path))
    at = _page()
    cells = at.dataframe[0].value.to_numpy().ravel().tolist()
    # The grid prints a null cell as "None": every cell is text, and a missing number is a dash.
    assert all(isinstance(c, str) for c in cells) and "—" in cells, cells
    assert not any(c in ("None", "nan", "NaN", "") for c in cells), cells
    assert _tabs_default(at) == "Hessian & sharpness"  # after a sharpness probe its tab opens, not 1-D slices
    detail = at.dataframe[1].value.to_numpy().ravel().tolist()
    assert all(isinstance(c, str) for c in detail) and not any(c in ("None", "nan", "") for c in detail), detail


def test_running_probe_is_not_called_missing(home, tmp_path, monkeypatch):
    import shutil

    src = home["store"].get(RUNS[0]).path
    shutil.copytree(src, tmp_path / "busy-run", ignore=shutil.ignore_patterns("analyses"))
    from uegr.runs import RunStore

    real_popen = subprocess.Popen
    monkeypatch.setattr(jobs.subprocess, "Popen", lambda cmd, **kw: real_popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], **kw))
    job = lv.launch_probe(RunStore(tmp_path).get("busy-run"), "slice2d", {"examples": 8, "points": 3},
                          runs_dir=tmp_path)
    try:
        monkeypatch.setenv("UEGR_HOME", str(tmp_path))
        at = _page()
        infos = _infos(at)
        assert "slice2d probe of **busy-run** is running" in infos
        assert "No probes yet" not in infos
        assert "The 2-D slice of busy-run is running" in infos
    finally:
        os.kill(job["pid"], signal.SIGTERM)
        jobs.reap()
