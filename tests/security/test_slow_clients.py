"""Slow clients (slowloris) are bounded (`broker.web.connections`): request
headers must be complete within ``server.header_timeout_seconds`` or the
connection is closed, and one address may hold at most
``server.max_pending_headers_per_ip`` connections still sending them; one
more is closed at once. Idle keep-alive connections and requests whose body
is still arriving are not affected. Real sockets against the tests' broker,
which runs the runner ``broker serve`` uses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from tests.security.conftest import Env

pytestmark = pytest.mark.db

PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
PROMPTLY = 5.0  # an upper bound for "closed at once", far above what it takes


class Sockets:
    def __init__(self, port: int) -> None:
        self.port = port
        self.open: list[asyncio.StreamWriter] = []

    async def connect(
        self, first: bytes = b""
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.open.append(writer)
        if first:
            writer.write(first)
            await writer.drain()
        return reader, writer


@pytest.fixture
async def sockets() -> AsyncIterator[Callable[[Env], Sockets]]:
    made: list[Sockets] = []

    def make(env: Env) -> Sockets:
        made.append(Sockets(env.port))
        return made[-1]

    yield make
    for group in made:
        for writer in group.open:
            writer.close()


async def closed(reader: asyncio.StreamReader, within: float = PROMPTLY) -> bool:
    """Whether the broker closes the connection within ``within`` seconds."""
    try:
        return await asyncio.wait_for(reader.read(), within) == b""
    except (TimeoutError, ConnectionError):
        return False


async def still_open(reader: asyncio.StreamReader, for_: float) -> bool:
    """Whether the connection stays open and silent for ``for_`` seconds."""
    try:
        await asyncio.wait_for(reader.read(1), for_)
    except TimeoutError:
        return True
    return False


async def test_one_address_holds_a_bounded_number_of_slow_connections(
    make_env, sockets: Callable[[Env], Sockets]
) -> None:
    env: Env = await make_env(
        env={
            "BROKER_SERVER_MAX_PENDING_HEADERS_PER_IP": "3",
            "BROKER_SERVER_HEADER_TIMEOUT_SECONDS": "60",
        }
    )
    slow = sockets(env)
    held = [await slow.connect(PARTIAL) for _ in range(3)]
    reader, _ = await slow.connect(PARTIAL)
    assert await closed(reader)  # the fourth, over the limit: closed at once
    silent, _ = await slow.connect()
    assert await closed(silent)  # one that sends nothing counts too
    # The three held ones were never cut: they finish their requests.
    for reader, writer in held:
        writer.write(b"1\r\nConnection: close\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), PROMPTLY)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
    # Their slots are free again.
    reader, writer = await slow.connect(PARTIAL)
    writer.write(b"1\r\nConnection: close\r\n\r\n")
    assert (await asyncio.wait_for(reader.read(), PROMPTLY)).startswith(b"HTTP/1.1 200")
    assert (await env.client.get("/healthz")).status == 200


async def test_headers_must_arrive_in_time(
    make_env, sockets: Callable[[Env], Sockets], token: Callable[..., str]
) -> None:
    timeout = 0.5
    env: Env = await make_env(env={"BROKER_SERVER_HEADER_TIMEOUT_SECONDS": str(timeout)})
    slow = sockets(env)
    dribbling, writer = await slow.connect(PARTIAL)
    silent, _ = await slow.connect()
    writer.write(b"a")  # a byte now and then does not extend the deadline
    await writer.drain()
    assert await closed(dribbling, timeout + PROMPTLY)
    assert await closed(silent, timeout + PROMPTLY)

    # Keep-alive: idle between requests is not waiting for headers.
    reader, writer = await slow.connect(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert (await asyncio.wait_for(reader.readuntil(b'"ok"}'), PROMPTLY)).startswith(
        b"HTTP/1.1 200"
    )
    assert await still_open(reader, timeout * 3)
    # The next request's first byte starts the clock again.
    writer.write(b"GET /hea")
    await writer.drain()
    assert await closed(reader, timeout + PROMPTLY)

    # A body still arriving after complete headers is not a slow header.
    body = b'{"a": 1}'
    head = (
        "POST /api/workspaces/ws-shared/launch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token('alice')}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    reader, writer = await slow.connect(head.encode() + body[:2])
    assert await still_open(reader, timeout * 3)
    writer.write(body[2:])
    answer = await asyncio.wait_for(reader.read(), PROMPTLY)
    assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
