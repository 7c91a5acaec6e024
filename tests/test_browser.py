"""End-to-end: a real `streamlit run app` driven by Debian chromium through playwright.

Starts a tiny run from the Train page, watches the Live chart gain points, stops the run, and (with
UEGR_SCREENSHOTS=1) saves docs/screenshots/<page>.png for every page of this part of the dashboard.
"""

from __future__ import annotations

import math
import os
import time

import pytest
from pagetools import SHOTS, browser_or_skip, chromium, serve_home, set_text, wait_for

from uegr.runs import RunStore

pytestmark = [pytest.mark.browser, pytest.mark.slow]
sync_api = browser_or_skip()

PAGES = ["home", "train", "live", "runs"]
POINTS_JS = """() => Math.max(0, ...Array.from(document.querySelectorAll('.js-plotly-plot'))
    .map(el => (el._fullData || []).reduce((n, t) => Math.max(n, (t.x || []).length || 0), 0)))"""


JS_PANEL = """() => {
    const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
    const title = el => (((el.layout || {}).title || {}).text || '').replace(/<[^>]+>/g, '');  // Streamlit adds <b>
    const div = plots.find(el => title(el).startsWith('Divergence'));
    const loss = plots.find(el => title(el).startsWith('Loss'));
    if (!div || !loss) return null;
    const ys = div._fullData.filter(t => t.name === 'JS' && t.visible !== false).flatMap(t => Array.from(t.y));
    const ax = div._fullLayout.yaxis;
    return {type: ax.type, lo: ax.range[0], hi: ax.range[1], min: Math.min(...ys), max: Math.max(...ys),
            loss_names: loss._fullData.map(t => t.name)};
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("uegr_browser"))
    for url in serve_home(store.root, lambda: [run.request_stop() for run in store.list()]):  # no run left behind
        yield url, store


def test_train_live_stop_and_screenshots(server):
    url, store = server
    with sync_api.sync_playwright() as p:
        browser = chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.set_viewport_size({"width": 1400, "height": 900})  # a laptop screen: the demo needs no scrolling
            page.goto(url)
            demo = page.get_by_role("button", name="Start the quick demo")
            demo.wait_for(timeout=60_000)
            box = demo.bounding_box()
            assert box and box["y"] + box["height"] <= 900, box
            page.set_viewport_size({"width": 1400, "height": 1000})

            page.goto(url + "/train?preset=tiny")
            page.get_by_role("button", name="Start training").wait_for(timeout=60_000)
            # Method first: vanilla shows none of UEGR's knobs; UEGR brings them back.
            knob = page.get_by_role("spinbutton", name="Sub-models (K)")
            assert knob.is_visible()
            page.get_by_text("Vanilla", exact=True).click()
            wait_for(lambda: knob.count() == 0, 20, "UEGR's knobs to go away for vanilla")
            assert page.get_by_text("no knobs of its own").is_visible()
            page.get_by_text("UEGR", exact=True).first.click()
            knob.wait_for(timeout=20_000)
            # Two invalid fields are reported together, each by name.
            page.get_by_role("tab", name="Optimisation").click()
            set_text(page.get_by_role("spinbutton", name="Learning rate"), "0")
            page.get_by_role("tab", name="Data").click()
            set_text(page.get_by_role("spinbutton", name="Max length (tokens)"), "2")
            page.get_by_text("2 fields to fix").wait_for(timeout=20_000)
            for field in ("optim.lr", "data.max_length"):
                assert page.locator("[data-testid='stAlertContentError']").filter(has_text=field).count() >= 2
            set_text(page.get_by_role("spinbutton", name="Max length (tokens)"), "32")
            page.get_by_role("tab", name="Optimisation").click()
            set_text(page.get_by_role("spinbutton", name="Learning rate"), "0.001")
            page.get_by_text("fields to fix").wait_for(state="detached", timeout=20_000)

            name_box = page.get_by_role("textbox", name="Run name (optional)")
            name_box.fill("browser-tiny")
            name_box.press("Enter")
            set_text(page.get_by_role("spinbutton", name="Max steps (0 = use epochs)"), "400")  # stop it half-way
            time.sleep(1.5)
            page.get_by_role("button", name="Start training").click()
            page.wait_for_url("**/live**", timeout=30_000)
            run = store.get("browser-tiny")
            assert run.config().optim.max_steps == 400 and run.config().model.name == "tiny-bert"

            first = wait_for(lambda: page.evaluate(POINTS_JS), 180, "the first chart points")
            more = wait_for(lambda: (n := page.evaluate(POINTS_JS)) > first and n, 120, "the chart to gain points")
            assert more > first
            # JS has a panel of its own, on a log axis fitted to it (not a flat line at 0 under the CE).
            js = wait_for(lambda: page.evaluate(JS_PANEL), 60, "the divergence panel")
            assert js["type"] == "log" and js["lo"] <= math.log10(js["min"]) and math.log10(js["max"]) <= js["hi"]
            assert js["hi"] < 0 and js["hi"] - js["lo"] < 4, js  # a range of JS values, not of cross-entropy
            assert js["loss_names"] and "JS" not in js["loss_names"]

            page.get_by_role("button", name="Stop").first.click()
            wait_for(lambda: run.status()["state"] == "stopped", 120, "the run to stop")
            page.get_by_text("stopped").first.wait_for(timeout=15_000)

            if os.environ.get("UEGR_SCREENSHOTS") == "1":
                SHOTS.mkdir(parents=True, exist_ok=True)
                ready = {"home": "img", "train": "button:has-text('Start training')", "live": ".js-plotly-plot",
                         "runs": "[data-testid='stDataFrame']"}
                page.set_viewport_size({"width": 1400, "height": 1700})  # the app scrolls inside its own container
                for name in PAGES:
                    page.goto(f"{url}/" + ("" if name == "home" else name))  # the default page lives at /
                    page.locator(ready[name]).first.wait_for(timeout=60_000)
                    time.sleep(3)  # let late elements (charts, tables) finish drawing
                    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
        finally:
            browser.close()
