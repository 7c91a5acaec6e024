"""`uegr report`: one self-contained HTML file from REAL tiny runs (trained, attacked and probed here through
the CLI), checked as HTML and opened in Chromium with every network request aborted.

With UEGR_SCREENSHOTS=1 the browser test also saves docs/screenshots/report.png and report-run.png.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

from uegr.cli import main
from uegr.compare import comparison_table
from uegr.report import fmt
from uegr.runs import RunStore
from uegr.stats import wilson_interval

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> None:
    assert main(list(args)) == 0, args


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("report_runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    d = ["--runs-dir", str(home)]
    _cli("train", "--preset", "tiny", "--name", "r-uegr", "--quiet", "--set", "optim.max_steps=4", *d)
    _cli("train", "--preset", "tiny", "--name", "r-vanilla", "--quiet", "--set", "method.name=vanilla",
         "--set", "optim.max_steps=2", *d)
    for run in ("r-uegr", "r-vanilla"):
        _cli("attack", run, "-n", "4", "--recipe", "deepwordbug", "--json", *d)
    _cli("landscape", "r-uegr", "--kind", "slice1d", "--examples", "16", "--points", "5", "--no-progress",
         "--json", *d)
    torch.set_num_threads(threads)
    return home


@pytest.fixture(scope="module")
def report(home):
    out = home / "out" / "report.html"
    _cli("report", "r-uegr", "r-vanilla", "-o", str(out), "--runs-dir", str(home))
    return out


def _expected(home) -> dict:
    store = RunStore(home)
    rows = {r["name"]: r for r in comparison_table(store.list())}
    att = json.loads((store.get("r-uegr").analyses_dir / "attack-deepwordbug-validation.json").read_text())
    n = next(r["n"] for r in reversed(store.get("r-uegr").metrics("eval")) if r.get("n"))
    lo, hi = wilson_interval(round(rows["r-uegr"]["clean_accuracy"] * n), n)
    return {"clean": fmt(rows["r-uegr"]["clean_accuracy"]), "under": fmt(att["accuracy_under_attack"]),
            "clean_ci": f"[{lo:.3f}, {hi:.3f}]",
            "vanilla_clean": fmt(rows["r-vanilla"]["clean_accuracy"])}


def test_report_is_self_contained(home, report):
    text = report.read_text(encoding="utf-8")
    # plotly.js inline exactly once, no external script, stylesheet or image
    assert text.count("plotly.js v") >= 1 and not re.search(r"<script[^>]+src=", text)
    assert not re.search(r"<link[^>]+href=\"?https?:", text) and "cdn.plot.ly" not in text.split("</script>")[-1]
    n = int(re.search(r'name="uegr-figures" content="(\d+)"', text).group(1))
    assert n == text.count('class="plotly-graph-div"') >= 5
    exp = _expected(home)
    for part in ("Run r-uegr", "Run r-vanilla", "method.k", "Paired on the same sentences", "landscape-slice1d",
                 "The paper vs this project", "What is the paper", "Fisher saliency", exp["clean"], exp["under"]):
        assert part in text, part


def test_report_rejects_bad_input(home, capsys):
    assert main(["report", "no-such-run", "-o", str(home / "x.html"), "--runs-dir", str(home)]) == 2
    assert main(["report", "r-uegr", "-o", str(home / "x.pdf"), "--runs-dir", str(home)]) == 2
    (home / "d.html").mkdir()
    assert main(["report", "r-uegr", "-o", str(home / "d.html"), "--runs-dir", str(home)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "no-such-run" in err[0] and ".html" in err[1] and "folder" in err[2]
    assert not (home / "x.pdf").exists()


@pytest.mark.browser
def test_report_renders_offline_in_chromium(home, report):
    from pagetools import browser_or_skip, chromium

    sync_api = browser_or_skip()
    exp = _expected(home)
    blocked: list[str] = []

    def block(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as p:
        browser = chromium(p)
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            page.route("**/*", block)
            page.goto(report.as_uri())
            expected = int(page.locator('meta[name="uegr-figures"]').get_attribute("content"))
            page.wait_for_function(f"document.querySelectorAll('.plotly-graph-div .main-svg').length >= {expected}",
                                   timeout=30_000)
            figs = page.evaluate("""() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => ({
                traces: (d._fullData || []).length,
                points: (d._fullData || []).reduce((n, t) => n + ((t.x || t.z || []).length || 0), 0),
                svg: !!d.querySelector('.main-svg')}))""")
            assert len(figs) == expected >= 5
            assert all(f["svg"] and f["traces"] > 0 and f["points"] > 0 for f in figs), figs
            assert not blocked and not errors, (blocked, errors)
            compare = page.locator("#comparison table.comparison").inner_text()
            row = next(line for line in compare.splitlines() if line.startswith("r-uegr"))
            assert exp["clean"] in row.split("\t") and exp["clean_ci"] in row.split("\t")
            assert any(exp["vanilla_clean"] in line.split("\t") for line in compare.splitlines()
                       if line.startswith("r-vanilla"))
            attacks = page.locator("#run-r-uegr table.attacks").inner_text()
            assert exp["under"] in attacks and "deepwordbug/validation" in attacks
            for run in ("r-uegr", "r-vanilla"):  # one word diff per saved example of a successful attack
                shown = len(json.loads((home / run / "analyses" / "attack-deepwordbug-validation.json")
                                       .read_text())["examples"][:3])
                assert page.locator(f"#run-{run} .diff").count() == shown
            if os.environ.get("UEGR_SCREENSHOTS") == "1":
                shots = ROOT / "docs" / "screenshots"
                shots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shots / "report.png"))
                page.evaluate("document.getElementById('run-r-uegr').scrollIntoView()")
                page.screenshot(path=str(shots / "report-run.png"))
        finally:
            browser.close()


def test_word_diff_marks_changed_words():
    from uegr.report import _word_diff_html

    out = _word_diff_html("a truly good film", "a truly g00d film")
    assert out.count("<del>") == 1 and "<del>good</del>" in out and "<ins>g00d</ins>" in out


def test_report_buttons_on_runs_and_compare(home, monkeypatch):
    from pagetools import open_page

    monkeypatch.setenv("UEGR_HOME", str(home))
    for page in ("../pages/runs.py", "../pages/compare.py"):
        at = open_page(page)
        labels = [b.proto.label for b in at.get("download_button")]
        assert "Download HTML report" in labels, (page, labels)
