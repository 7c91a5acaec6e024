"""Learn in a real browser: Play 5 steps and watch the charts gain 5 points, one tick at a time; a glossary
link opens the Glossary page at its term.

The page runs the tiny random BERT (UEGR_LEARN_MODEL=tiny-bert unless set). With UEGR_SCREENSHOTS=1 it
also saves docs/screenshots/learn.png, learn-play.png and learn-ladder.png (run it with
UEGR_LEARN_MODEL=minilm for the documentation pictures).
"""

from __future__ import annotations

import os
import re
import time

import pytest
from pagetools import SHOTS, browser_or_skip, chromium, serve, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]
sync_api = browser_or_skip()
WAIT = 900 if os.environ.get("UEGR_LEARN_MODEL", "tiny-bert") != "tiny-bert" else 120  # seconds; MiniLM is slower
# Points on the chart(s) whose title contains `title` (while Streamlit swaps a chart, old and new coexist).
POINTS_JS = """(title) => { const ds = Array.from(document.querySelectorAll('.js-plotly-plot')).filter(
    el => el.layout && el.layout.title && String(el.layout.title.text || '').includes(title));
    return ds.length ? Math.max(0, ...ds.flatMap(d => (d._fullData || []).map(t => (t.x || []).length))) : -1 }"""

TABS_TOP = "() => document.querySelector('[role=tablist]').scrollIntoView()"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("uegr_learn_browser")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UEGR_LEARN_MODEL", os.environ.get("UEGR_LEARN_MODEL", "tiny-bert"))
        proc, url = serve.start(home, log=home / "streamlit.log")
    yield url
    serve.stop(proc)


def test_play_five_steps_gains_five_points(server):
    shots = os.environ.get("UEGR_SCREENSHOTS") == "1"
    with sync_api.sync_playwright() as p:
        browser = chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(server + "/learn")
            page.get_by_text("L_clean").first.wait_for(timeout=WAIT * 1000)  # the one-step tab rendered
            if shots:
                SHOTS.mkdir(parents=True, exist_ok=True)
                page.wait_for_timeout(1500)
                page.screenshot(path=str(SHOTS / "learn.png"))
            page.get_by_role("tab", name="Play N steps").click()
            box = page.get_by_role("spinbutton", name="Steps to play")
            box.fill("5")
            box.press("Enter")
            time.sleep(1.0)
            page.get_by_role("button", name=re.compile(r"Play$")).click()
            seen, end = [], time.time() + WAIT
            while time.time() < end:
                n = page.evaluate(POINTS_JS, "losses per step")
                if n >= 0 and (not seen or seen[-1] != n):
                    seen.append(n)
                if n >= 5:
                    break
                time.sleep(0.1)
            assert seen and seen[-1] == 5, seen
            assert len([n for n in seen if 0 < n < 5]) >= 1, f"no intermediate frame: {seen}"  # it animated
            # the charts below the loss chart are drawn after it in the same rerun (later on a busy machine)
            for title in ("dropout rate of each sub-model", "the mask over the steps"):
                wait_for(lambda t=title: page.evaluate(POINTS_JS, t) == 5, 30, f"5 points in {title!r}", poll=0.2)
            time.sleep(2.0)  # the target is reached: playing stopped
            assert page.evaluate(POINTS_JS, "losses per step") == 5
            assert page.get_by_role("button", name=re.compile(r"Pause$")).is_disabled()
            # a glossary link opens the Glossary page at the term
            with page.expect_popup(timeout=60_000) as pop:
                page.get_by_role("link", name="Keep ratio").first.click()
            glossary = pop.value
            assert glossary.url.endswith("/glossary#keep-ratio")
            glossary.get_by_role("heading", name="Keep ratio").wait_for(timeout=60_000)
            glossary.close()
            if shots:
                page.evaluate(TABS_TOP)
                page.wait_for_timeout(500)
                page.screenshot(path=str(SHOTS / "learn-play.png"))
                page.get_by_role("tab", name="Ablation ladder").click()
                page.get_by_role("button", name=re.compile(r"Run the ladder$")).click()
                page.get_by_text("what each rung adds to the loss").first.wait_for(timeout=WAIT * 1000)
                page.evaluate(TABS_TOP)
                page.wait_for_timeout(1500)
                page.screenshot(path=str(SHOTS / "learn-ladder.png"))
        finally:
            browser.close()
