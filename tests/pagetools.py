"""Helpers shared by the dashboard tests: open one page in AppTest; skip browser tests cleanly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app" / "streamlit_app.py")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


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
    from app import serve

    if not Path(serve.CHROMIUM).exists():
        pytest.skip(f"{serve.CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)
    return pytest.importorskip("playwright.sync_api", reason="pip playwright is not installed")
