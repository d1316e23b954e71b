"""The browser tests' side of bench/browser.py: a running app, and Playwright pages opened on it."""
from __future__ import annotations

from bench.browser import CHROMIUM, CHROMIUM_ARGS, ROOT, running_streamlit, streamlit_server  # noqa: F401

# -- driving the app in Chromium (Playwright pages) -------------------------------------------
ARTIFACTS = ROOT / "tests" / "artifacts"  # screenshots, ignored by git


def wait_until_idle(page, timeout: int = 60_000) -> None:
    """The status widget ("Running…") is on screen only while a script runs: wait for it to go."""
    page.wait_for_timeout(300)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout)
    page.wait_for_timeout(300)


def open_page(browser, url: str, title: str, height: int = 1000, **context):
    """A new page at url, once its h1 says `title` and its script is idle; no traceback on it."""
    page = browser.new_page(viewport={"width": 1400, "height": height}, **context)
    page.goto(url)
    page.locator("h1", has_text=title).wait_for(timeout=60_000)
    wait_until_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0, f"{url} shows a traceback"
    return page
