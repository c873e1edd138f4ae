"""What the viewer shows, in Chromium, when guacd cannot reach the workspace:
the broker's error naming the address and a Reconnect button, never "You
disconnected". The guacd is the simulated one behaving like guacd 1.5.5 for an
unreachable VNC server (``ready``, then ``disconnect`` once the client writes).
Screenshots (taken by the page fixture): artifacts/browser/."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from playwright.async_api import Page

from tests.browser.test_demo_in_chromium import browser, page
from tests.processes import free_port, start_broker_process, wait_ready

pytestmark = [pytest.mark.browser, pytest.mark.slow]

__all__ = ["browser", "page"]  # the Chromium fixtures

WORKSPACE = """
[[workspaces]]
id = "ws-gone"
name = "Unreachable Desktop"
type = "linux"
host = "127.0.0.1"
port = 5999
"""


@pytest.fixture
def failing_guacd(request: pytest.FixtureRequest) -> Iterator[int]:
    """A simulated guacd failing every connection with ``request.param``."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "protocols.simulated.guacd", "--host", "127.0.0.1"]
        + ["--port", str(port), "--failure", request.param],
        stdout=subprocess.DEVNULL,
    )
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.mark.parametrize(
    ("failing_guacd", "shown", "not_shown"),
    [
        ("unreachable", ["could not be reached", "127.0.0.1:5999"], "disconnected"),
        # guacd 1.5.5's VNC error text says nothing to a user: the broker's words only.
        ("bad-password", ["could not be reached, or it refused"], "See logs"),
        # guacd's 769 (the workspace's login refused) is not the broker's 769
        # (a bad viewer link): the page says which.
        ("unauthorized", ["refused the username or password"], "viewer link is not valid"),
    ],
    indirect=["failing_guacd"],
)
async def test_a_failed_connection_shows_the_brokers_words_and_reconnect(
    page: Page,
    tmp_path: Path,
    failing_guacd: int,
    shown: list[str],
    not_shown: str,
    write_config: Callable[..., Path],
    token: Callable[..., str],
) -> None:
    port = free_port()
    config = write_config(
        f'[guacd]\nendpoints = ["127.0.0.1:{failing_guacd}"]\n', workspaces=WORKSPACE
    )
    proc = start_broker_process(config, port, tmp_path)
    try:
        await wait_ready(port, proc)
        base = f"http://127.0.0.1:{port}"
        launched = await asyncio.to_thread(
            requests.post,
            f"{base}/api/workspaces/ws-gone/launch",
            headers={"Authorization": f"Bearer {token()}"},
            timeout=10,
        )
        assert launched.status_code == 201, launched.text
        body = launched.json()
        await page.goto(f"{base}/viewer/{body['session_id']}#token={body['viewer_token']}")
        await page.wait_for_selector("body[data-state=error]", timeout=20000)
        overlay = await page.inner_text("#overlay")
        assert all(text in overlay for text in shown), overlay
        assert not_shown not in overlay
        assert await page.is_visible("#reconnect")
    finally:
        proc.terminate()
        proc.wait(15)
