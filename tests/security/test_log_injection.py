"""No forged log lines: a client's CR, LF, NUL or ESC, in a request path or in
any text a log call formats, reaches the log escaped (``\\x0a``), so every log
record stays one line and no client can write a record of its own.

The logs are read as ``broker serve`` writes them: one handler on the root
logger with its format and `RedactingFilter`, plus the access log class."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from broker.app import create_app
from broker.web.logs import AccessLogger
from broker.web.redact import RedactingFilter

pytestmark = pytest.mark.db

FORGED = '2026-01-01 00:00:00,000 INFO aiohttp.access: 10.9.9.9 "GET /admin" 200 1.0ms'


@pytest.fixture
def served_log() -> Iterator[io.StringIO]:
    """What ``broker serve`` would write to stderr, captured."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
async def broker(
    make_settings: Callable[..., Any],
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    server = TestServer(create_app(make_settings()), host="127.0.0.1")
    await server.start_server(access_log_class=AccessLogger)  # the class `broker serve` uses
    client: TestClient[web.Request, web.Application] = TestClient(server)
    yield client
    await client.close()


async def _raw_get(port: int, target: str) -> bytes:
    """One request with exactly this request target, as a script would send it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
        writer.write(b"Connection: close\r\n\r\n")
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def _records(text: str, marker: str) -> list[str]:
    return [line for line in text.splitlines() if marker in line]


@pytest.mark.parametrize(
    ("encoded", "escaped"),
    [("%0A", "\\x0a"), ("%0D", "\\x0d"), ("%00", "\\x00"), ("%1B[2J", "\\x1b[2J")],
)
async def test_a_control_character_in_the_path_cannot_forge_an_access_log_line(
    broker: TestClient[web.Request, web.Application],
    served_log: io.StringIO,
    encoded: str,
    escaped: str,
) -> None:
    port = broker.port
    assert port is not None
    forged = FORGED.replace(" ", "%20").replace('"', "%22")
    answer = await _raw_get(port, f"/healthz-probe{encoded}{forged}")
    assert answer.startswith(b"HTTP/1.1 404")
    await _raw_get(port, "/healthz")  # its line is written after the first one's

    text = served_log.getvalue()
    lines = text.splitlines()
    probe = _records(text, "/healthz-probe")
    assert len(probe) == 1, text
    assert escaped + FORGED in probe[0]
    # Nothing the client sent starts a line: every line is a record of ours.
    assert not any(line.startswith(FORGED[:10]) for line in lines), text
    assert all(c.isprintable() for line in lines for c in line), text


def test_client_text_in_any_log_call_stays_on_one_line(served_log: io.StringIO) -> None:
    log = logging.getLogger("broker.web.apps")
    log.warning("session %s: %s", "abc", f"evil\r\n{FORGED}\x00\x1b]0;title\x07")
    log.warning("subject %s", "\u202egnp.exe")  # a bidi override reorders what a reader sees
    try:
        raise ValueError(f"bad host\n{FORGED}")
    except ValueError:
        log.exception("unhandled error on GET %s", "/x\n" + FORGED)

    lines = served_log.getvalue().splitlines()
    assert not any(line.startswith(FORGED[:10]) for line in lines), lines
    assert all(c.isprintable() for line in lines for c in line), lines
    assert "evil\\x0d\\x0a" + FORGED + "\\x00\\x1b]0;title\\x07" in lines[0]
    assert "\\u202egnp.exe" in lines[1]
    # The traceback keeps its lines, each one indented under its record.
    assert lines[2].endswith("unhandled error on GET /x\\x0a" + FORGED)
    assert lines[3:] and all(line.startswith("  ") for line in lines[3:]), lines
