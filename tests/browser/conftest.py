"""Browser tests: Playwright for Python driving Debian's Chromium (``apt-get install chromium``)
against a real Royal. Nothing is downloaded at run time: Playwright starts the system's browser
through ``executable_path``. Screenshots go to ``test-artifacts/screenshots`` (or
``ROYAL_TEST_ARTIFACTS``), kept after the run for a human to look at.

Outside CI the tests skip when Chromium or Playwright is missing; in CI they must run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.conftest import IN_CI

try:
    from playwright.async_api import Browser, Page, async_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    async_playwright = None  # type: ignore[assignment]

CHROMIUM = os.environ.get("ROYAL_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("ROYAL_TEST_ARTIFACTS", "test-artifacts")) / "screenshots"
# As root and on a machine with no route out: no sandbox, and no background calls to Google
# (they would be refused, many at a time, and slow every start).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing() -> str | None:
    if async_playwright is None:
        return "playwright is not installed (pip install -e '.[test]')"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set ROYAL_TEST_CHROMIUM)"
    return None


@pytest.fixture(name="browser")
async def _browser() -> AsyncIterator[Browser]:
    if (missing := _missing()) is not None:
        if IN_CI:
            pytest.fail(f"browser tests must run in CI: {missing}")
        pytest.skip(missing)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture(name="page")
async def _page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh browser context (no cookies, no storage) at an operator's screen size. A script
    error on the page fails the test."""
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        await context.close()
    assert not errors, f"script errors on the page: {errors}"


@pytest.fixture(name="screenshot")
def _screenshot(page: Page, request: pytest.FixtureRequest) -> Callable[[str], Awaitable[Path]]:
    """``await screenshot("step")`` saves ``<test name>-<step>.png`` as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    async def take(step: str) -> Path:
        path = ARTIFACTS / f"{request.node.name}-{step}.png"
        await page.screenshot(path=path, full_page=True)
        return path

    return take
