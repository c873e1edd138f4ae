"""Shared pieces of the viewer tunnel tests: the workspaces they configure and a
client that behaves like guacamole-common-js (aiohttp's WebSocket client)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import aiohttp

from protocols.instruction import Parser
from tests.broker.apiclient import Api

UUID_MESSAGE = re.compile(r"^0\.,36\.[0-9a-f-]{36};$")
DISPLAY = (
    "GUAC_WIDTH=1024&GUAC_HEIGHT=768&GUAC_DPI=96&GUAC_TIMEZONE=Europe/Berlin&GUAC_IMAGE=image/png"
)

WORKSPACES = """
[[workspaces]]
id = "ws-vnc"
name = "VNC Desktop"
type = "linux"

[[workspaces]]
id = "ws-rdp"
name = "RDP Desktop"
type = "rdp"
username = "alice"
password_env = "TEST_WS_PASSWORD"
security = "nla"
ignore_cert = true

[[workspaces]]
id = "ws-ssh"
name = "SSH"
type = "ssh"

[[workspaces]]
id = "ws-badpw"
name = "Wrong password"
type = "vnc"
username = "simfail-bad-password"

[[workspaces]]
id = "ws-locked"
name = "No clipboard"
type = "vnc"
allow_copy = false
allow_paste = false
read_only = true

[[workspaces]]
id = "ws-recorded"
name = "Recorded"
type = "rdp"
recording_path = "/var/lib/guacamole/recordings"

[[workspaces]]
id = "ws-wiki"
name = "Wiki"
type = "html5"
"""


def tunnel_url(sid: str, credential: str, extra: str = DISPLAY) -> str:
    return f"/viewer/{sid}/websocket-tunnel?token={credential}&{extra}"


async def open_tunnel(api: Api, sid: str, credential: str) -> aiohttp.ClientWebSocketResponse:
    return await api.client.ws_connect(tunnel_url(sid, credential), protocols=("guacamole",))


async def launch(api: Api, token: str, workspace: str = "ws-vnc") -> dict[str, Any]:
    r = await api.launch(workspace, token)
    assert r.status == 201, r.body
    body: dict[str, Any] = r.body
    return body


async def read_until(
    ws: aiohttp.ClientWebSocketResponse, predicate: Callable[[str], bool], limit: float = 10
) -> list[str]:
    """Text frames until one satisfies ``predicate`` (included)."""
    frames: list[str] = []

    async def run() -> list[str]:
        async for msg in ws:
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            frames.append(msg.data)
            if predicate(msg.data):
                return frames
        raise AssertionError(f"closed before the expected frame: {ws.close_code} {frames[-3:]}")

    return await asyncio.wait_for(run(), limit)


async def finish(
    ws: aiohttp.ClientWebSocketResponse, limit: float = 10
) -> tuple[list[str], int, str]:
    """Read to the close: the text frames, the close code and the close reason."""

    async def run() -> tuple[list[str], int, str]:
        frames: list[str] = []
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                frames.append(msg.data)
            elif msg.type == aiohttp.WSMsgType.CLOSE:
                return frames, int(msg.data), str(msg.extra or "")
            elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return frames, ws.close_code or 0, ""
            else:
                raise AssertionError(f"unexpected {msg}")

    return await asyncio.wait_for(run(), limit)


def whole_instructions(frame: str) -> bool:
    parser = Parser()
    parser.feed(frame.encode())
    return parser.pending == 0
