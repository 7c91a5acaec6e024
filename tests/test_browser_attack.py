"""End-to-end: `streamlit run app` + Debian chromium (playwright): attack one sentence against two models on
the Attack lab page and see the word diff and the attributions; then the Compare page.

UEGR_HOME is a temporary folder with two tiny runs made here by the CLI (or, for nicer screenshots, an
existing folder with at least two runs given as UEGR_BROWSER_HOME). With UEGR_SCREENSHOTS=1 it saves
docs/screenshots/attack.png and docs/screenshots/compare.png.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pagetools import ROOT, SHOTS, browser_or_skip, chromium, serve

pytestmark = [pytest.mark.browser, pytest.mark.slow]
sync_api = browser_or_skip()

SENTENCE = "A gripping, beautifully acted film that never loses its nerve."


WORD_COUNTS = """() => Array.from(document.querySelectorAll("[data-testid='stColumn']"))
    .filter(col => /\\d+\\/\\d+ words changed/.test(col.innerText) && col.querySelector('h3'))
    .map(col => ({said: parseInt(col.innerText.match(/(\\d+)\\/\\d+ words changed/)[1]),
                  marked: col.querySelectorAll("span[style*='line-through']").length,
                  failed: col.innerText.includes('attack failed')}))"""
# {run: [colours of its traces]} in the chart whose title starts with TITLE
RUN_COLOURS = """() => {
    const el = Array.from(document.querySelectorAll('.js-plotly-plot'))
        .find(e => (((e.layout || {}).title || {}).text || '').replace(/<[^>]+>/g, '').startsWith('TITLE'));
    if (!el || !el._fullData) return null;
    const out = {};
    for (const t of el._fullData) {
        if (!t.meta) continue;
        const c = t.mode && t.mode.includes('markers') && !t.mode.includes('lines') ? t.marker.color : t.line.color;
        (out[t.meta] = out[t.meta] || []).push(c);
    }
    return Object.keys(out).length ? out : null;
}"""
LABEL_BOXES = """() => {
    const el = Array.from(document.querySelectorAll('.js-plotly-plot'))
        .find(e => (((e.layout || {}).title || {}).text || '').replace(/<[^>]+>/g, '').startsWith('Clean vs robust'));
    if (!el) return null;
    const boxes = Array.from(el.querySelectorAll('g.annotation-text-g')).map(g => {
        const r = g.getBoundingClientRect();
        return {l: r.left, r: r.right, t: r.top, b: r.bottom, text: g.textContent};
    });
    return boxes.length ? boxes : null;
}"""


def _wait_js(page, script: str, what: str, timeout: float = 60.0):
    end = time.time() + timeout
    while time.time() < end:
        v = page.evaluate(script)
        if v:
            return v
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _settle(page, timeout: float = 120.0) -> None:
    """Wait until the script run has finished drawing (Streamlit streams elements while it runs)."""
    end = time.time() + timeout
    while time.time() < end:
        if page.locator("[data-testid='stStatusWidget']").count() == 0 and \
                page.locator("[data-testid='stMetric']").count() >= 4:
            return
        time.sleep(0.5)


def _cli(home: Path, *args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "uegr.cli", *args], cwd=ROOT, env={**os.environ, "UEGR_HOME": str(home)},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    given = os.environ.get("UEGR_BROWSER_HOME")
    if given:
        home = Path(given)
    else:
        home = tmp_path_factory.mktemp("uegr_browser_attack")
        common = ["--preset", "tiny", "--quiet", "--set", "runtime.threads=1", "--set", "optim.max_steps=2",
                  "--set", "runtime.eval_every=2"]
        _cli(home, "train", *common, "--name", "tiny-vanilla", "--set", "method.name=vanilla")
        _cli(home, "train", *common, "--name", "tiny-uegr")
        for name in ("tiny-uegr", "tiny-vanilla"):  # both attacked: two points, two labels on Compare
            _cli(home, "attack", name, "--recipe", "deepwordbug", "-n", "2", "--split", "test",
                 "--query-budget", "200")
    log = tmp_path_factory.mktemp("streamlit_log") / "streamlit.log"
    proc, url = serve.start(home, log=log)
    yield url
    serve.stop(proc)


def test_attack_two_models_diff_and_attributions(server):
    url = server
    shots = os.environ.get("UEGR_SCREENSHOTS") == "1"
    with sync_api.sync_playwright() as p:
        browser = chromium(p)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        try:
            page.goto(url + "/attack?recipe=deepwordbug")  # the fastest recipe to build on tiny models
            page.get_by_role("button", name="Attack", exact=True).wait_for(timeout=120_000)
            box = page.get_by_role("textbox", name="Sentence to attack")
            box.fill(SENTENCE)
            box.press("Control+Enter")  # commit the text area
            budget = page.get_by_role("spinbutton", name="Query budget", exact=True)
            budget.fill("12")  # a small budget: attacks fail, and show their best attempt
            budget.press("Enter")
            time.sleep(1.5)
            page.get_by_text("· vanilla", exact=False).first.wait_for(timeout=10_000)  # preselected baseline
            page.get_by_role("button", name="Attack", exact=True).click()
            page.get_by_text("Attributions: adversarial").nth(1).wait_for(timeout=300_000)
            assert page.get_by_text("Attributions: original").count() == 2
            assert page.locator("h3").filter(has_text=" · ").count() == 2  # one column per model
            _settle(page)
            assert page.locator("[data-testid='stMetric']").count() == 4  # before/after x 2 models
            # the word diff: both sentences shown per model, changed words marked
            assert page.locator("span[style*='line-through']").count() + \
                page.locator("span[style*='background:#dfd']").count() >= 1 or \
                page.get_by_text("skipped: already wrong").count() == 2
            # signed attributions: one span per word, for 2 sentences x 2 models
            n_attr = page.locator("span[title^='+'], span[title^='-']").count()
            assert n_attr >= 2 * 2 * 8, n_attr
            assert page.get_by_text("for the target class").count() >= 1
            assert page.get_by_text("convergence delta", exact=False).count() == 4
            # every model's "N/M words changed" equals the words its diff marks, failed attacks included
            counts = page.evaluate(WORD_COUNTS)
            assert len(counts) == 2 and all(c["said"] == c["marked"] for c in counts), counts
            assert any(c["failed"] and c["marked"] > 0 for c in counts) or \
                all(not c["failed"] for c in counts), counts
            if shots:
                SHOTS.mkdir(parents=True, exist_ok=True)
                page.set_viewport_size({"width": 1500, "height": 2400})  # the app scrolls inside its own container
                time.sleep(2)
                page.screenshot(path=str(SHOTS / "attack.png"), full_page=True)
                page.set_viewport_size({"width": 1500, "height": 1000})

            # one run, one colour: its curves on Live and its point on Compare
            page.goto(url + "/live?run=tiny-uegr")
            live = _wait_js(page, RUN_COLOURS.replace("TITLE", "Loss"), "the Live loss chart")
            page.goto(url + "/compare")
            page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=120_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            scatter = _wait_js(page, RUN_COLOURS.replace("TITLE", "Clean vs robust"), "the Compare scatter")
            assert set(live["tiny-uegr"]) == set(scatter["tiny-uegr"]) == {live["tiny-uegr"][0]}, (live, scatter)
            boxes = _wait_js(page, LABEL_BOXES, "the scatter's labels")
            assert len(boxes) == 2 and all("n =" in b["text"] for b in boxes), boxes
            a, b = boxes
            assert a["r"] <= b["l"] or b["r"] <= a["l"] or a["b"] <= b["t"] or b["b"] <= a["t"], boxes
            sentence = page.get_by_role("textbox", name="Sentence")
            sentence.fill(SENTENCE)
            sentence.press("Enter")
            page.locator("[data-testid='stMetric']").nth(1).wait_for(timeout=120_000)
            if shots:
                page.set_viewport_size({"width": 1500, "height": 2600})
                time.sleep(3)
                page.screenshot(path=str(SHOTS / "compare.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(Path(os.environ.get("TMPDIR", "/tmp")) / "uegr_browser_attack_fail.png"),
                            full_page=True)
            raise
        finally:
            browser.close()
