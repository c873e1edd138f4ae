"""Shared pieces of the HTML5 proxy tests: the workspaces they configure, the
environment the fixtures in ``conftest.py`` build, and small helpers.

The flow a browser test follows, with the broker at ``http://localhost:<port>``:
launch → ``GET /viewer/<id>/info`` gives ``app_url`` =
``http://<id>.localhost:<port>/__broker/enter`` → open ``app_url#token=<viewer
token>`` → the page POSTs the token to ``/__broker/session`` and goes to ``/``,
which shows the simulated app (texts in `protocols.simulated.webapp`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient

from broker.config import Settings
from broker.web.origins import app_entry_url
from protocols.simulated.webapp import SimulatedWebApp
from tests.broker.apiclient import Api

TIMEOUT = 10  # generous bound for anything awaited; nothing here sleeps


def workspaces(app_port: int, down_port: int) -> str:
    return f"""
[[workspaces]]
id = "ws-wiki"
name = "Team Wiki"
type = "html5"
port = {app_port}

[[workspaces]]
id = "ws-wiki-2"
name = "Second Wiki"
type = "html5"
port = {app_port}

[[workspaces]]
id = "ws-down"
name = "Stopped App"
type = "html5"
port = {down_port}

[[workspaces]]
id = "ws-windows"
name = "Windows Server"
type = "rdp"
"""


@dataclass
class Env:
    client: TestClient[web.Request, web.Application]
    settings: Settings
    webapp: SimulatedWebApp
    api: Api
    urls: list[str]  # every URL a simulated browser requested
    new_browser: Callable[[], aiohttp.ClientSession]

    @property
    def port(self) -> int:
        port = self.client.port
        assert port is not None
        return port

    def origin(self, session_id: str) -> str:
        return f"http://{session_id}.localhost:{self.port}"

    async def launch(self, token: str, workspace: str = "ws-wiki") -> tuple[str, str]:
        r = await self.api.launch(workspace, token)
        assert r.status in (200, 201), r.body
        return r.body["session_id"], r.body["viewer_token"]

    async def sign_in(
        self, browser: aiohttp.ClientSession, session_id: str, viewer_token: str
    ) -> aiohttp.ClientResponse:
        """What the entry page does in a browser: load, then POST the fragment's token."""
        entry = app_entry_url(self.settings, session_id, f"localhost:{self.port}")
        async with browser.get(entry) as page:
            assert page.status == 200
        async with browser.get(self.origin(session_id) + "/__broker/enter.js") as script:
            assert script.status == 200
        r = await browser.post(
            self.origin(session_id) + "/__broker/session",
            json={"token": viewer_token},
            headers={"Origin": self.origin(session_id), "Sec-Fetch-Site": "same-origin"},
        )
        await r.read()
        return r


def cookie_attributes(set_cookie: str) -> tuple[str, dict[str, str]]:
    first, *attrs = [p.strip() for p in set_cookie.split(";")]
    return first.partition("=")[0], {
        a.partition("=")[0].lower(): a.partition("=")[2] for a in attrs
    }
