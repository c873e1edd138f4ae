"""Fixtures of the HTML5 proxy tests, end to end over real sockets: the broker
on loopback, the simulated web app behind it, and
aiohttp clients acting as the browser (a resolver sends ``*.localhost`` to
127.0.0.1 and a real cookie jar scopes the app cookie to its origin, as
Chromium does)."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from protocols.simulated.webapp import SimulatedWebApp
from tests.broker.apiclient import Api
from tests.broker.apps.support import TIMEOUT, Env, workspaces
from tests.localhost import LocalhostResolver


@pytest.fixture(autouse=True)
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Ending streams early (session end, shutdown, a browser leaving) is normal
    operation: it must not be logged as an error."""
    yield
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


@pytest.fixture
async def webapp() -> AsyncIterator[SimulatedWebApp]:
    app = SimulatedWebApp()
    await app.start("127.0.0.1", 0)
    yield app
    await app.aclose()


@pytest.fixture
def down_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
async def browsers() -> AsyncIterator[tuple[list[str], Callable[[], aiohttp.ClientSession]]]:
    urls: list[str] = []
    sessions: list[aiohttp.ClientSession] = []

    async def record(_s: Any, _ctx: Any, params: aiohttp.TraceRequestStartParams) -> None:
        urls.append(str(params.url))

    def new() -> aiohttp.ClientSession:
        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(record)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=LocalhostResolver()),
            trace_configs=[trace],
            timeout=aiohttp.ClientTimeout(total=TIMEOUT),
        )
        sessions.append(session)
        return session

    yield urls, new
    for session in sessions:
        await session.close()


@pytest.fixture
def make_env(start_broker, make_settings, webapp, down_port, browsers):
    async def make(extra: str = "", env: dict[str, str] | None = None) -> Env:
        settings = make_settings(extra, env=env, workspaces=workspaces(webapp.port, down_port))
        client = await start_broker(settings)
        return Env(client, settings, webapp, Api(client), *browsers)

    return make


@pytest.fixture
async def env(make_env) -> Env:
    result: Env = await make_env()
    return result
