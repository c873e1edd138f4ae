"""The viewer page in headless Chromium against the real guacd: an SSH
session where what the user types runs, and a VNC desktop with no stored
password where the viewer's credential prompt lets the user in, and the
error with Reconnect that a VNC, RDP or SSH workspace whose server is down
shows. Screenshots land in artifacts/browser/."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page

from scripts.processes import free_port
from tests.broker.viewer_support import launch
from tests.browser.chromium import ARTIFACTS, CHROMIUM, chromium, screenshotted_page
from tests.integration.conftest import UNIX_USER, unavailable, workspace
from tests.integration.servers import Server
from tests.integration.support import eventually

pytestmark = [pytest.mark.real_guacd, pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if CHROMIUM is None:
        unavailable("chromium is not installed (scripts/install-system-deps.sh installs it)")
    async with chromium() as b:
        yield b


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    async with screenshotted_page(browser, f"real-guacd-{request.node.name}") as p:
        yield p


async def open_viewer_page(page: Page, api, token: str, workspace_id: str) -> str:
    launched = await launch(api, token, workspace_id)
    base = str(api.client.make_url("/")).rstrip("/")
    sid = launched["session_id"]
    await page.goto(f"{base}/viewer/{sid}#token={launched['viewer_token']}")
    return str(sid)


async def test_ssh_in_chromium_typed_command_runs(
    real_broker, ssh_server, password_file, token, page
):
    api = await real_broker(
        workspace("ws-ssh", "ssh", ssh_server, password_file=password_file(ssh_server.password))
    )
    await open_viewer_page(page, api, token(), "ws-ssh")
    await page.wait_for_selector("body[data-state=connected]", timeout=20000)
    target = Path("/tmp") / f"guac-chromium-{uuid.uuid4().hex[:12]}"
    try:
        await page.keyboard.type(f"touch {target}")
        await page.keyboard.press("Enter")
        await eventually(target.exists, f"{target} created by the command typed in Chromium")
    finally:
        target.unlink(missing_ok=True)


async def test_vnc_in_chromium_credential_prompt(real_broker, vnc_server, token, page):
    api = await real_broker(workspace("ws-vnc", "vnc", vnc_server))  # no stored password
    await open_viewer_page(page, api, token(), "ws-vnc")
    await page.wait_for_selector("#required[open]", timeout=20000)
    await page.fill("#required-fields input[name=password]", vnc_server.password)
    await page.click("#required-form button[type=submit]")
    await page.wait_for_selector("body[data-state=connected]", timeout=20000)


@pytest.mark.parametrize("protocol", ["vnc", "rdp", "ssh"])
async def test_unreachable_server_in_chromium_shows_error_and_reconnect(
    real_broker, password_file, token, page, protocol
):
    """What the user sees for a workspace whose server is down: the broker's
    error naming the address, with Reconnect (never "You disconnected")."""
    port = free_port()  # nothing listens on it
    server = Server("127.0.0.1", port, username="" if protocol == "vnc" else UNIX_USER)
    extra = {"ignore_cert": True} if protocol == "rdp" else {}
    api = await real_broker(
        workspace("ws", protocol, server, password_file=password_file("secret1"), **extra)
    )
    await open_viewer_page(page, api, token(), "ws")
    await page.wait_for_selector("body[data-state=error]", timeout=20000)
    overlay = await page.inner_text("#overlay")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"real-guacd-unreachable-{protocol}.png"))
    assert "Connection failed" in overlay, overlay
    assert "could not be reached" in overlay, overlay
    assert f"127.0.0.1:{port}" in overlay, overlay
    assert "disconnected" not in overlay.lower(), overlay
    assert await page.is_visible("#reconnect")


@pytest.mark.parametrize("protocol", ["vnc", "rdp"])
async def test_wrong_password_in_chromium_says_the_login_was_refused(
    real_broker, password_file, token, page, request, protocol
):
    """guacd 1.5.5 tells a refused VNC password (a bare ``disconnect``) and a
    refused RDP NLA login ("Server refused connection") no differently from a
    server that is down; the broker finds the server answering, and the user
    reads that the login was refused, with the address and Reconnect."""
    server = request.getfixturevalue("vnc_server" if protocol == "vnc" else "rdp_nla_server")
    extra = {"security": "nla", "ignore_cert": True} if protocol == "rdp" else {}
    api = await real_broker(
        workspace("ws", protocol, server, password_file=password_file("wrong-pw"), **extra)
    )
    await open_viewer_page(page, api, token(), "ws")
    await page.wait_for_selector("body[data-state=error]", timeout=20000)
    overlay = await page.inner_text("#overlay")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"real-guacd-wrong-password-{protocol}.png"))
    assert "The remote desktop refused the username or password." in overlay, overlay
    assert f"{server.host}:{server.port} answered but refused the login" in overlay, overlay
    assert await page.is_visible("#reconnect")
