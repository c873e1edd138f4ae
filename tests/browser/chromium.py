"""Headless Chromium for the browser tests (Debian's `chromium`, driven by
Playwright): the browser and a page that saves a screenshot of how it ended
and fails the test on any uncaught page error."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"
CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Chromium, closed afterwards; the caller checks `CHROMIUM` first."""
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM or "/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def screenshotted_page(browser: Browser, name: str) -> AsyncIterator[Page]:
    """A 1280x800 page; afterwards its screenshot is saved as
    ``artifacts/browser/<name>.png`` and any uncaught page error fails."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    await context.close()
    assert not errors, errors
