"""End-to-end: the Sweep page in a real `streamlit run app` driven by Debian chromium (playwright).

Starts a tiny sweep from the form, watches the optimization history gain points while the study runs as a
background job, opens a trial in Live. With UEGR_SCREENSHOTS=1 saves docs/screenshots/sweep.png.
"""

from __future__ import annotations

import os
import time

import pytest
from pagetools import SHOTS, browser_or_skip, chromium, serve_home, set_text, wait_for

from uegr import jobs
from uegr.runs import RunStore

pytestmark = [pytest.mark.browser, pytest.mark.slow]
sync_api = browser_or_skip()
# Points of the optimization history (Optuna's figure: its first trace holds one point per trial).
HISTORY_JS = """() => {
    const el = Array.from(document.querySelectorAll('.js-plotly-plot'))
        .find(el => (((el.layout || {}).title || {}).text || '').replace(/<[^>]+>/g, '')
            .startsWith('Optimization History'));
    return el ? (el._fullData[0].x || []).length : 0;
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("uegr_browser_sweep"))
    for url in serve_home(store.root, lambda: [job.request_stop(force=True) for job in jobs.active(store)]):
        yield url, store  # no sweep is left behind


def test_sweep_page_runs_a_tiny_study_and_opens_a_trial_in_live(server):
    url, store = server
    with sync_api.sync_playwright() as p:
        browser = chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(url + "/sweep?preset=tiny")
            start = page.get_by_role("button", name="Start sweep")
            start.wait_for(timeout=180_000)  # the first load imports torch, optuna and plotly
            name = page.get_by_role("textbox", name="Study name")
            set_text(name, "browser-sweep")
            set_text(page.get_by_role("spinbutton", name="Trials"), "3")
            start.click()
            job = wait_for(lambda: jobs.latest(store, "sweep", study="browser-sweep"), 30, "the sweep job")
            first = wait_for(lambda: page.evaluate(HISTORY_JS), 240, "the first point of the history")
            more = wait_for(lambda: (n := page.evaluate(HISTORY_JS)) > first and n, 240, "the history to gain points")
            assert more > first
            assert job.wait(240)["state"] == "completed", job.log_tail(30)
            page.get_by_text("completed").first.wait_for(timeout=30_000)

            if os.environ.get("UEGR_SCREENSHOTS") == "1":
                SHOTS.mkdir(parents=True, exist_ok=True)
                page.set_viewport_size({"width": 1400, "height": 1900})
                time.sleep(3)
                page.screenshot(path=str(SHOTS / "sweep.png"), full_page=True)
                page.get_by_role("tab", name="Pareto front (clean vs robust)").click()
                time.sleep(2)
                page.screenshot(path=str(SHOTS / "sweep-pareto.png"), full_page=True)
                page.set_viewport_size({"width": 1400, "height": 1000})

            time.sleep(3)  # the page redraws once when the job ends: click after that, not into the old page
            for attempt in range(3):
                page.get_by_role("button", name="Open in Live").click()
                try:
                    page.wait_for_url("**/live**", timeout=20_000)
                    break
                except sync_api.TimeoutError:
                    if attempt == 2:
                        raise
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            assert "browser-sweep-t000" in page.content()
        finally:
            browser.close()
