"""Portal fixtures (tests/portal_support.py), and the Chromium the page tests drive."""

import pytest
from portal_support import dispatcher, home

from harness.browser import launch

__all__ = ["browser", "dispatcher", "home"]


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright (harness/browser.py), one per test module;
    skipped, saying why, where it cannot start."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
    try:
        playwright = sync_api.sync_playwright().start()
    except Exception as exc:
        pytest.skip(f"playwright does not start: {exc}")
    try:
        chromium = launch(playwright)
    except Exception as exc:
        playwright.stop()
        pytest.skip(f"playwright cannot launch Chromium: {exc}")
    yield chromium
    chromium.close()
    playwright.stop()
