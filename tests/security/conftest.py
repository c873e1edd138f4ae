"""Fixtures for the security tests: one broker with every kind of workspace,
the simulated guacd and web app behind it, and browser-like clients.

Two users: alice (role ``finance``) and bob (no roles). Workspaces: a shared
VNC desktop, a finance-only desktop, and one HTML5 app each."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from broker.config import Settings
from broker.web.origins import app_entry_url
from protocols.simulated.guacd import SimulatedGuacd, SimulatedGuacdOptions
from protocols.simulated.webapp import SimulatedWebApp
from tests.broker.apiclient import Api
from tests.localhost import LocalhostResolver

TIMEOUT = 10
DISPLAY = "GUAC_WIDTH=1024&GUAC_HEIGHT=768&GUAC_DPI=96&GUAC_IMAGE=image/png"
PASSWORD_ENV = "SECURITY_TEST_WS_PASSWORD"


def workspaces(app_port: int) -> str:
    return f"""
[[workspaces]]
id = "ws-shared"
name = "Shared Desktop"
type = "linux"

[[workspaces]]
id = "ws-finance"
name = "Finance Desktop"
type = "rdp"
username = "fin"
password_env = "{PASSWORD_ENV}"
allowed_roles = ["finance"]

[[workspaces]]
id = "ws-wiki-a"
name = "Wiki A"
type = "html5"
port = {app_port}

[[workspaces]]
id = "ws-wiki-b"
name = "Wiki B"
type = "html5"
port = {app_port}
"""


@dataclass
class Env:
    client: TestClient[web.Request, web.Application]
    settings: Settings
    guacd: SimulatedGuacd
    webapp: SimulatedWebApp
    api: Api
    new_browser: Callable[[], aiohttp.ClientSession]

    @property
    def port(self) -> int:
        port = self.client.port
        assert port is not None
        return port

    @property
    def base(self) -> str:
        return f"http://localhost:{self.port}"

    def origin(self, session_id: str) -> str:
        return f"http://{session_id}.localhost:{self.port}"

    async def launch(self, token: str, workspace: str) -> dict[str, Any]:
        r = await self.api.launch(workspace, token)
        assert r.status in (200, 201), r.body
        body: dict[str, Any] = r.body
        return body

    def tunnel(self, session_id: str, credential: str) -> str:
        return f"/viewer/{session_id}/websocket-tunnel?token={credential}&{DISPLAY}"

    async def sign_in(
        self, browser: aiohttp.ClientSession, session_id: str, viewer_token: str
    ) -> aiohttp.ClientResponse:
        """What the HTML5 entry page does: load, then POST the fragment's token."""
        entry = app_entry_url(self.settings, session_id, f"localhost:{self.port}")
        async with browser.get(entry) as page:
            assert page.status == 200
        r = await browser.post(
            self.origin(session_id) + "/__broker/session",
            json={"token": viewer_token},
            headers={"Origin": self.origin(session_id), "Sec-Fetch-Site": "same-origin"},
        )
        await r.read()
        return r


@pytest.fixture
async def guacd() -> AsyncIterator[SimulatedGuacd]:
    server = SimulatedGuacd(SimulatedGuacdOptions(first_frame_delay=0.05, idle_sync_interval=0.1))
    await server.start(host="127.0.0.1", port=0)
    yield server
    await server.aclose()


@pytest.fixture
async def webapp() -> AsyncIterator[SimulatedWebApp]:
    app = SimulatedWebApp()
    await app.start("127.0.0.1", 0)
    yield app
    await app.aclose()


@pytest.fixture
async def browsers() -> AsyncIterator[Callable[[], aiohttp.ClientSession]]:
    sessions: list[aiohttp.ClientSession] = []

    def new() -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=LocalhostResolver()),
            timeout=aiohttp.ClientTimeout(total=TIMEOUT),
        )
        sessions.append(session)
        return session

    yield new
    for session in sessions:
        await session.close()


@pytest.fixture
def make_env(
    start_broker: Callable[..., Any],
    make_settings: Callable[..., Settings],
    guacd: SimulatedGuacd,
    webapp: SimulatedWebApp,
    browsers: Callable[[], aiohttp.ClientSession],
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Any]:
    monkeypatch.setenv(PASSWORD_ENV, "Finance-Desktop-Pa55word!")

    async def make(extra: str = "", env: dict[str, str] | None = None) -> Env:
        settings = make_settings(
            extra,
            env={"BROKER_GUACD_ENDPOINTS": f"127.0.0.1:{guacd.port}", **(env or {})},
            workspaces=workspaces(webapp.port),
        )
        client = await start_broker(settings)
        return Env(client, settings, guacd, webapp, Api(client), browsers)

    return make


@pytest.fixture
async def env(make_env: Callable[..., Any]) -> Env:
    result: Env = await make_env()
    return result
