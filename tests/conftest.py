"""Shared fixtures: a real database per test (SQLite file by default; PostgreSQL
when BROKER_TEST_DATABASE_URL points at one), the broker app on a real socket,
and development tokens."""

from __future__ import annotations

import os
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_runner import BaseRunner
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from broker.app import create_app
from broker.config import Settings, load_settings
from broker.core.auth import mint_dev_token
from broker.web.connections import EdgeRunner
from protocols.simulated.guacd import SimulatedGuacd, SimulatedGuacdOptions
from tests.broker.apiclient import Api
from tests.broker.viewer_support import WORKSPACES
from tunnels.base import TunnelProvider

TEST_SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
ISSUER = "connection-broker-dev"
AUDIENCE = "connection-broker"
PG_URL = os.environ.get("BROKER_TEST_DATABASE_URL", "")

WORKSPACES_TOML = """
[[workspaces]]
id = "ws-linux-desktop"
name = "Linux Desktop"
type = "linux"
description = "Linux over VNC"

[[workspaces]]
id = "ws-windows"
name = "Windows Server"
type = "rdp"

[[workspaces]]
id = "ws-wiki"
name = "Team Wiki"
type = "html5"
port = 8081

[[workspaces]]
id = "ws-finance"
name = "Finance Desktop"
type = "rdp"
allowed_roles = ["finance"]
"""


# Copies of real guacd 1.5.5 output, kept in the repository (tests/data/README.md).
GUACD_CAPTURES = Path(__file__).resolve().parent / "data"
CAPTURE_FILES = ("vnc-x11vnc-20s.guac", "rdp-freerdp-shadow-20s.guac", "ssh-sshd-10s.guac")


@pytest.fixture(scope="session")
def captures_dir() -> Path:
    """The folder of guacd captures and transcripts (tests/data)."""
    return GUACD_CAPTURES


async def _reset_postgres(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


@pytest.fixture
async def database_url(tmp_path: Path) -> str:
    """A fresh, empty database for this test."""
    if PG_URL:
        await _reset_postgres(PG_URL)
        return PG_URL
    return f"sqlite+aiosqlite:///{tmp_path / 'broker.db'}"


@pytest.fixture
def write_config(tmp_path: Path, database_url: str) -> Callable[..., Path]:
    """Write a config file: the test workspaces plus ``extra`` TOML."""

    def write(extra: str = "", *, workspaces: str = WORKSPACES_TOML) -> Path:
        path = tmp_path / "broker.toml"
        head = textwrap.dedent(f"""
            [server]
            data_dir = "{tmp_path / "data"}"
            # Clients here name the broker localhost:<port> and 127.0.0.1:<port>,
            # as in development (tests of the Host rule turn this off).
            allow_loopback_hosts = true

            [database]
            url = "{database_url}"
            auto_migrate = true
            """)
        path.write_text(head + textwrap.dedent(extra) + workspaces)
        return path

    return write


@pytest.fixture
def make_settings(write_config: Callable[..., Path]) -> Callable[..., Settings]:
    def make(extra: str = "", env: dict[str, str] | None = None, **kw: Any) -> Settings:
        # Most tests run no guacd: its health checks are off unless a test turns
        # them on (BROKER_GUACD_HEALTH_CHECK_SECONDS), so launches do not 503.
        env = {
            "BROKER_AUTH_HS256_SECRET": TEST_SECRET,
            "BROKER_GUACD_HEALTH_CHECK_SECONDS": "0",
            **(env or {}),
        }
        return load_settings(write_config(extra, **kw), env=env)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def token() -> Callable[..., str]:
    def make(
        sub: str = "alice",
        email: str | None = None,
        roles: list[str] | None = None,
        *,
        mfa: bool = True,
        ttl: int = 600,
    ) -> str:
        return mint_dev_token(
            TEST_SECRET,
            issuer=ISSUER,
            audience=AUDIENCE,
            sub=sub,
            email=email or f"{sub}@example.com",
            roles=roles or [],
            mfa=mfa,
            ttl=ttl,
        )

    return make


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class EdgeTestServer(TestServer):
    """A test server run by the runner ``broker serve`` uses (slow clients
    bounded, `broker.web.connections`)."""

    def __init__(self, app: web.Application, settings: Settings, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.settings = settings
        self.edge: EdgeRunner | None = None

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        self.edge = EdgeRunner(self.app, self.settings.server, **kwargs)
        return self.edge


@pytest.fixture
async def start_broker() -> AsyncIterator[Callable[..., Any]]:
    """Start a broker app on a real loopback socket; closed after the test."""
    clients: list[TestClient[web.Request, web.Application]] = []

    async def start(
        settings: Settings, *, tunnels: TunnelProvider | None = None
    ) -> TestClient[web.Request, web.Application]:
        app = create_app(settings, tunnels=tunnels)
        client: TestClient[web.Request, web.Application] = TestClient(
            EdgeTestServer(app, settings, host="127.0.0.1")
        )
        clients.append(client)  # closed even if it fails to start
        await client.start_server()
        return client

    yield start
    for client in reversed(clients):
        await client.close()


@pytest.fixture
async def client(
    start_broker: Callable[..., Any], settings: Settings
) -> TestClient[web.Request, web.Application]:
    result: TestClient[web.Request, web.Application] = await start_broker(settings)
    return result


# -- desktops: a simulated guacd, and a broker with the viewer test workspaces --


@pytest.fixture
async def start_guacd() -> AsyncIterator[Callable[..., Awaitable[SimulatedGuacd]]]:
    """Start simulated guacds with the given `SimulatedGuacdOptions`; all are
    closed after the test."""
    servers: list[SimulatedGuacd] = []

    async def start(**options: Any) -> SimulatedGuacd:
        server = SimulatedGuacd(SimulatedGuacdOptions(**options))
        servers.append(server)
        await server.start(host="127.0.0.1", port=0)
        return server

    yield start
    for server in servers:
        await server.aclose()


@pytest.fixture
async def guacd(start_guacd: Callable[..., Awaitable[SimulatedGuacd]]) -> SimulatedGuacd:
    return await start_guacd(first_frame_delay=0.05)


@pytest.fixture
def broker_for(start_broker, make_settings, monkeypatch) -> Callable[..., Any]:
    monkeypatch.setenv("TEST_WS_PASSWORD", "s3cret-Pa55word")

    async def start(guacd_port: int, **env: str) -> Api:
        settings = make_settings(
            workspaces=WORKSPACES,
            env={
                "BROKER_GUACD_ENDPOINTS": f"127.0.0.1:{guacd_port}",
                "BROKER_GUACD_CONNECT_TIMEOUT_SECONDS": "2",
                **env,
            },
        )
        return Api(await start_broker(settings))

    return start
