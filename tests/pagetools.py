"""Helpers shared by the dashboard tests: open one page in AppTest; skip browser tests cleanly."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app" / "streamlit_app.py")
SHOTS = ROOT / "docs" / "screenshots"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app import serve  # noqa: E402 - needs ROOT on sys.path


def open_page(path: str, timeout: float = 180):
    """Run the app, switch to `path` (relative to app/), and fail on any exception the page raised."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=timeout)
    at.run()
    at.switch_page(path)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def browser_or_skip():
    """playwright's sync API, or a module-level skip saying what is missing."""
    if not Path(serve.CHROMIUM).exists():
        pytest.skip(f"{serve.CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)
    return pytest.importorskip("playwright.sync_api", reason="pip playwright is not installed")


def chromium(playwright):
    """Headless Debian chromium with the flags that work offline (app/serve.py)."""
    return playwright.chromium.launch(executable_path=serve.CHROMIUM, args=serve.CHROMIUM_ARGS)


def serve_home(home: Path, cleanup=None):
    """For module fixtures: yields the URL of `streamlit run app` on the runs folder `home`, then runs
    `cleanup` (stop what the tests started) and stops the server, even when a test failed."""
    proc, url = serve.start(home, log=home / "streamlit.log")
    try:
        yield url
    finally:
        if cleanup is not None:
            cleanup()
        serve.stop(proc)


def wait_for(pred, timeout: float, what: str, poll: float = 0.5):
    """pred()'s first truthy value, polled; fails the test naming `what` after `timeout` seconds."""
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def set_text(box, value: str) -> None:
    """Type into a Streamlit text/number input and let the rerun it triggers start."""
    box.fill(value)
    box.press("Enter")
    time.sleep(0.8)
