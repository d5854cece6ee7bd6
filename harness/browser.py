"""Debian's Chromium driven by Playwright, for the pages' tests and screenshots: never a
downloaded browser.

    launch(playwright)  a headless Chromium from /usr/bin/chromium (FileNotFoundError when
                        it is missing: callers skip or stop, saying so)
"""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def launch(playwright):
    if not CHROMIUM.exists():
        raise FileNotFoundError(f"needs Debian's Chromium at {CHROMIUM}")
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
