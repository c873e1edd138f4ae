"""The tunnel through an independent client: the `websockets` package, used the
way guacamole-common-js uses its WebSocket (subprotocol ``guacamole``, display
settings in the query, a ping every half second, the close reason read as the
decimal Guacamole status)."""

from __future__ import annotations

import asyncio
import re

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import CloseCode

from protocols.instruction import Parser
from protocols.simulated.guacd import Mode
from tests.broker.viewer_support import DISPLAY, launch

pytestmark = pytest.mark.db

UUID = re.compile(r"^0\.,36\.[0-9a-f-]{36};$")


def ws_url(api, sid: str, credential: str) -> str:
    host, port = api.client.server.host, api.client.server.port
    return f"ws://{host}:{port}/viewer/{sid}/websocket-tunnel?token={credential}&{DISPLAY}"


async def pings(ws: ClientConnection, count: int) -> None:
    """Like guacamole-common-js: a ping instruction every 500 ms."""
    for i in range(count):
        await ws.send(f"0.,4.ping,13.{1700000000000 + i};")
        await asyncio.sleep(0.5)


async def test_like_guacamole_common_js(start_guacd, broker_for, token, captures_dir):
    server = await start_guacd(
        mode=Mode.REPLAY,
        captures_dir=captures_dir,
        first_frame_delay=0.0,
        replay_pace=True,
        replay_speed=4.0,
    )
    api = await broker_for(server.port)
    launched = await launch(api, token())
    url = ws_url(api, launched["session_id"], launched["viewer_token"])
    async with connect(url, subprotocols=["guacamole"], compression=None) as ws:
        assert ws.subprotocol == "guacamole"
        assert UUID.match(str(await ws.recv()))
        pinger = asyncio.create_task(pings(ws, 4))
        echoes, parser, instructions = 0, Parser(), 0
        async with asyncio.timeout(20):
            while echoes < 4:
                frame = await ws.recv()
                assert isinstance(frame, str)  # text frames only
                if frame.startswith("0.,4.ping,"):
                    echoes += 1
                    continue
                instructions += len(parser.feed(frame.encode()))
                assert parser.pending == 0  # every frame holds whole instructions
        await pinger
        assert instructions > 0
        # The session ends through the API: the close reason is the status.
        r = await api.post(
            f"/api/sessions/{launched['session_id']}/disconnect", launched["viewer_token"]
        )
        assert r.status == 200
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
            CloseCode.NORMAL_CLOSURE,
            "0",
        )


async def test_refused_credential_reads_as_769(api_with_guacd, token):
    api = api_with_guacd
    launched = await launch(api, token())
    url = ws_url(api, launched["session_id"], "not-the-token")
    async with connect(url, subprotocols=["guacamole"]) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
            await ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (CloseCode.POLICY_VIOLATION, "769")


async def test_plain_http_is_refused_without_upgrade(api_with_guacd, token):
    api = api_with_guacd
    launched = await launch(api, token())
    url = ws_url(api, launched["session_id"], launched["viewer_token"]).replace(
        "/websocket-tunnel", "/websocket-tunnelx"
    )
    with pytest.raises(InvalidStatus):
        async with connect(url, subprotocols=["guacamole"]):
            pass


@pytest.fixture
async def api_with_guacd(broker_for, guacd):
    return await broker_for(guacd.port)
