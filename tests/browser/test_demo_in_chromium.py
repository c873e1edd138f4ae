"""The demo as a person uses it, in headless Chromium (Debian's package, driven by
Playwright): the portal from `broker serve` on its embedded defaults, a launch,
the live simulated desktop in the viewer's canvas, input that changes it, the
ended state, and the HTML5 web app. Screenshots land in artifacts/browser/."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.async_api import Browser, Page

from tests.browser.chromium import ARTIFACTS, CHROMIUM, chromium, screenshotted_page
from tests.processes import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # Chromium and a demo broker: 30 s

ROOT = Path(__file__).resolve().parents[2]
BACKGROUND = (32, 64, 128)
LEFT_CLICK = (255, 128, 0)
WHITE = (255, 255, 255)


@dataclass
class Demo:
    base: str
    token: str
    portal: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`broker serve` on its demo defaults, as `make run` starts it."""
    if CHROMIUM is None:
        pytest.fail("chromium is not installed (scripts/install-system-deps.sh installs it)")
    cwd = tmp_path_factory.mktemp("demo")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    log = (cwd / "broker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "broker", "serve", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        portal = ""
        assert proc.stdout is not None
        for line in proc.stdout:  # the announcement comes once the broker listens
            if line.startswith("portal:"):
                portal = line.split(None, 1)[1].strip()
                break
        assert portal, f"no portal line; see {cwd / 'broker.log'}"
        token = portal.split("#token=", 1)[1]
        yield Demo(f"http://127.0.0.1:{port}", token, portal)
    finally:
        proc.terminate()
        proc.wait(15)
        if proc.stdout:
            proc.stdout.close()
        log.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as b:
        yield b


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    async with screenshotted_page(browser, request.node.name) as p:
        yield p


PIXEL_JS = """([x, y]) => {
  const canvases = [...document.querySelectorAll('#display canvas')];
  const layer = canvases.sort((a, b) => b.width * b.height - a.width * a.height)[0];
  if (!layer || !layer.width) return null;
  const [r, g, b] = layer.getContext('2d').getImageData(x, y, 1, 1).data;
  return [r, g, b];
}"""

GEOMETRY_JS = """() => {
  const canvases = [...document.querySelectorAll('#display canvas')];
  const layer = canvases.sort((a, b) => b.width * b.height - a.width * a.height)[0];
  const box = layer.getBoundingClientRect();
  return {left: box.left, top: box.top, scale: box.width / layer.width,
          width: layer.width, height: layer.height};
}"""


async def api(demo: Demo, method: str, path: str) -> requests.Response:
    """A REST call with the demo token, off the event loop."""
    return await asyncio.to_thread(
        requests.request,
        method,
        demo.base + path,
        headers={"Authorization": f"Bearer {demo.token}"},
        timeout=10,
    )


async def pixel_becomes(page: Page, x: int, y: int, rgb: tuple[int, int, int]) -> None:
    await page.wait_for_function(
        f"""() => {{ const p = ({PIXEL_JS})([{x}, {y}]);
                     return p && p[0] === {rgb[0]} && p[1] === {rgb[1]} && p[2] === {rgb[2]}; }}""",
        timeout=15000,
    )


async def click_remote(page: Page, x: int, y: int) -> None:
    g: dict[str, Any] = await page.evaluate(GEOMETRY_JS)
    await page.mouse.click(g["left"] + x * g["scale"], g["top"] + y * g["scale"])


async def sign_in_and_launch(page: Page, demo: Demo, workspace: str) -> str:
    await page.goto(demo.portal)
    await page.wait_for_selector("body[data-state=signed-in]")
    assert "#token=" not in await page.evaluate("location.href")  # it left the address bar
    await page.click(f"li[data-workspace={workspace}] button.launch")
    await page.wait_for_url(re.compile(r"/viewer/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[1]


async def test_portal_launch_shows_live_desktop_that_answers_input(page: Page, demo: Demo):
    await page.goto(demo.portal)
    await page.wait_for_selector("body[data-state=signed-in]")
    tiles = await page.locator("li[data-workspace]").all_inner_texts()
    assert len(tiles) == 3 and any("Linux Desktop" in t for t in tiles)
    sid = await sign_in_and_launch(page, demo, "ws-linux-desktop")
    await page.wait_for_selector("body[data-state=connected]", timeout=20000)
    await pixel_becomes(page, 300, 300, BACKGROUND)
    await pixel_becomes(page, 10, 10, (40, 160, 40))  # the VNC marker
    await page.screenshot(path=str(ARTIFACTS / "desktop-before-click.png"))
    await click_remote(page, 300, 300)
    await pixel_becomes(page, 300, 300, LEFT_CLICK)
    await page.keyboard.press("a")
    await pixel_becomes(page, 14, 58, WHITE)
    # The clipboard both ways: the desktop copies back what it was given.
    await page.click("#clipboard-toggle")
    await page.fill("#clipboard", "hello from the browser")
    await page.click("#clipboard-send")
    await page.wait_for_function(
        "() => document.getElementById('clipboard').value === 'remote: hello from the browser'"
    )
    # The session the portal launched is the one the API shows, encrypted over NetBird.
    r = await api(demo, "GET", f"/api/sessions/{sid}")
    body = r.json()
    assert (body["status"], body["tunnel_status"]) == ("active", "encrypted")
    assert body["ip_address"].startswith("127.64.0.")
    await page.click("#disconnect")
    await page.wait_for_selector("body[data-state=ended]")
    assert "disconnected" in (await page.inner_text("#overlay-text"))
    r = await api(demo, "GET", f"/api/sessions/{sid}")
    assert r.json()["status"] == "disconnected"


async def test_credentials_prompt_then_ended_through_the_api(page: Page, demo: Demo):
    # The Windows demo stores no login: guacd sends `required`, the viewer asks.
    sid = await sign_in_and_launch(page, demo, "ws-windows-server")
    await page.wait_for_selector("#required[open]", timeout=20000)
    await page.fill("#required-fields input[name=username]", "demo")
    await page.fill("#required-fields input[name=password]", "correct horse")
    await page.click("#required-form button[type=submit]")
    await page.wait_for_selector("body[data-state=connected]", timeout=20000)
    await pixel_becomes(page, 10, 10, (200, 40, 40))  # the RDP marker
    r = await api(demo, "POST", "/api/workspaces/ws-windows-server/stop")
    assert r.status_code == 200 and r.json()["session"]["id"] == sid
    await page.wait_for_selector("body[data-state=ended]")
    text = await page.inner_text("#overlay")
    assert "Session ended" in text and "stopped" in text
    assert await page.is_hidden("#reconnect")


async def test_bad_viewer_link_explains_itself(page: Page, demo: Demo):
    await page.goto(f"{demo.base}/viewer/00000000-0000-4000-8000-000000000000#token=nope")
    await page.wait_for_selector("body[data-state=error]")
    assert "not valid" in await page.inner_text("#overlay-text")


async def test_viewer_and_portal_send_strict_security_headers(page: Page, demo: Demo):
    resp = await page.goto(f"{demo.base}/")
    assert resp is not None
    headers = await resp.all_headers()
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"


async def test_html5_workspace_on_its_own_origin(page: Page, demo: Demo):
    sid = await sign_in_and_launch(page, demo, "ws-team-wiki")
    # The viewer hands over to the app's own origin; the token is traded for a cookie.
    await page.wait_for_url(re.compile(rf"^http://{sid}\.localhost:\d+/$"), timeout=20000)
    assert "token" not in await page.evaluate("location.href")
    assert await page.title() == "Team Wiki"
    await page.wait_for_selector("text=echo: hello", timeout=15000)  # WebSocket through the proxy
    assert "WebSocket: open" in await page.inner_text("#ws-status")
    await page.click("#about-link")  # an absolute link, /about, stays on the app's origin
    await page.wait_for_selector("#about")
    assert page.url.startswith(f"http://{sid}.localhost:")
    await page.go_back()
    await page.fill("#name", "Ada")
    await page.click("#name-submit")
    assert "Thanks, Ada!" in await page.inner_text("#thanks")
    cookies = await page.context.cookies()
    app_cookie = [c for c in cookies if c["domain"].startswith(sid)]
    assert app_cookie and app_cookie[0]["httpOnly"] is True
    # Ending the session closes the door at once.
    r = await api(demo, "POST", f"/api/sessions/{sid}/disconnect")
    assert r.status_code == 200
    origin = page.url.split("/", 3)[:3]
    resp = await page.goto("/".join(origin) + "/about")
    assert resp is not None and resp.status == 401


async def test_touch_taps_click_the_desktop(browser: Browser, demo: Demo):
    context = await browser.new_context(viewport={"width": 1024, "height": 700}, has_touch=True)
    page = await context.new_page()
    try:
        await sign_in_and_launch(page, demo, "ws-linux-desktop")
        await page.wait_for_selector("body[data-state=connected]", timeout=20000)
        await pixel_becomes(page, 200, 200, BACKGROUND)
        g: dict[str, Any] = await page.evaluate(GEOMETRY_JS)
        await page.touchscreen.tap(g["left"] + 200 * g["scale"], g["top"] + 200 * g["scale"])
        await pixel_becomes(page, 200, 200, LEFT_CLICK)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "touch-tap.png"))
    finally:
        await context.close()
