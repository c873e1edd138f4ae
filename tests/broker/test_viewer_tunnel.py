"""The viewer's WebSocket tunnel end to end: a real broker on a socket, a
real (simulated) guacd on another, and clients that behave like
guacamole-common-js (aiohttp here, the independent `websockets` package in
test_viewer_websockets.py)."""

from __future__ import annotations

import asyncio
import base64
import time

import aiohttp
import pytest

from broker.core.audit import Actor
from broker.core.models import EndReason
from broker.web.http import BROKER
from protocols.instruction import Instruction, Parser
from protocols.simulated.guacd import Mode
from tests.broker.apiclient import Api
from tests.broker.viewer_support import (
    DISPLAY,
    UUID_MESSAGE,
    finish,
    launch,
    open_tunnel,
    read_until,
    tunnel_url,
    whole_instructions,
)
from tests.protocols.conftest import CAPTURE_FILES, GUACD_CAPTURES

pytestmark = pytest.mark.db


@pytest.fixture
async def api(broker_for, guacd) -> Api:
    result: Api = await broker_for(guacd.port)
    return result


async def test_handshake_uuid_and_desktop_frames(api, guacd, token):
    t = token()
    launched = await launch(api, t)
    ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
    assert ws.protocol == "guacamole"
    first = await ws.receive_str(timeout=10)
    assert UUID_MESSAGE.match(first)
    record = guacd.last_handshake
    assert record is not None and record.connection_id not in first
    frames = await read_until(ws, lambda f: "4.sync," in f)
    assert all(whole_instructions(f) for f in frames)
    text = "".join(frames)
    assert "3.img," in text and "4.blob," in text
    # What reached guacd: the grant's address, the display from the query, nothing else.
    assert record.protocol == "vnc"
    assert record.parameters["hostname"] == "127.0.0.1"
    assert record.parameters["port"] == "5900"
    assert record.size[:2] == ("1024", "768")
    assert record.timezone == "Europe/Berlin"
    assert record.name == "alice@example.com"
    await ws.close()


async def test_credentials_from_environment_reach_guacd_only(api, guacd, token):
    launched = await launch(api, token(), "ws-rdp")
    ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
    await read_until(ws, lambda f: "4.sync," in f)
    record = guacd.last_handshake
    assert record is not None and record.protocol == "rdp"
    assert record.parameters["username"] == "alice"
    assert record.parameters["password"] == "s3cret-Pa55word"
    assert record.parameters["security"] == "nla"
    assert record.parameters["ignore-cert"] == "true"
    assert len(record.connect_values) == 1 + len(guacd_args("rdp"))  # version first
    await ws.close()


def guacd_args(protocol: str) -> tuple[str, ...]:
    from protocols.guacd_args import GUACD_1_5_5_ARGS

    return tuple(GUACD_1_5_5_ARGS[protocol])


async def test_browser_cannot_inject_handshake_values(api, guacd, token):
    launched = await launch(api, token())
    extra = DISPLAY + "&hostname=evil.example&GUAC_ID=x&port=1&GUAC_TIMEZONE=x%0Ay&GUAC_WIDTH=99999"
    ws = await api.client.ws_connect(
        tunnel_url(launched["session_id"], launched["viewer_token"], extra),
        protocols=("guacamole",),
    )
    await read_until(ws, lambda f: "4.sync," in f)
    record = guacd.last_handshake
    assert record is not None
    assert record.parameters["hostname"] == "127.0.0.1" and record.parameters["port"] == "5900"
    assert int(record.size[0]) <= 8192
    await ws.close()


@pytest.mark.parametrize(
    "ending",
    [
        ("disconnect", 1000, "0"),
        ("stop", 1002, "523"),
        ("admin", 1002, "523"),
        ("max_duration", 1002, "522"),
        ("idle_timeout", 1002, "522"),
    ],
)
async def test_session_end_closes_stream_with_status(api, guacd, token, ending):
    how, code, reason = ending
    t = token()
    launched = await launch(api, t)
    sid = launched["session_id"]
    ws = await open_tunnel(api, sid, launched["viewer_token"])
    await read_until(ws, lambda f: "4.sync," in f)
    if how == "disconnect":
        r = await api.post(f"/api/sessions/{sid}/disconnect", launched["viewer_token"])
        assert r.status == 200
    elif how == "stop":
        assert (await api.post("/api/workspaces/ws-vnc/stop", t)).status == 200
    elif how == "admin":
        admin = token("root", roles=["admin"])
        assert (await api.post(f"/api/admin/sessions/{sid}/terminate", admin)).status == 200
    else:
        sessions = api.client.app[BROKER].sessions
        assert await sessions.end(sid, EndReason(how), Actor.system()) is not None
    frames, got_code, got_reason = await finish(ws)
    assert (got_code, got_reason) == (code, reason)
    if reason != "0":
        assert frames and frames[-1].startswith("5.error,") and frames[-1].endswith(f"3.{reason};")


async def test_ping_is_echoed_between_instructions_during_full_speed_replay(
    start_guacd, broker_for, token, captures_dir
):
    server = await start_guacd(
        mode=Mode.REPLAY,
        captures_dir=captures_dir,
        first_frame_delay=0.0,
        replay_chunk=4093,
    )
    api = await broker_for(server.port)
    launched = await launch(api, token())
    ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
    await ws.receive_str(timeout=10)
    capture = (captures_dir / CAPTURE_FILES[0]).read_bytes()
    pings = [f"0.,4.ping,13.{1700000000000 + i};" for i in range(20)]
    received = bytearray()
    echoes: list[str] = []
    sent = 0
    async for msg in ws:
        data = msg.data
        if data.startswith("0.,4.ping,"):
            echoes.append(data)
            continue
        assert whole_instructions(data)
        received += data.encode()
        if sent < len(pings) and len(received) > sent * 30000:
            await ws.send_str(pings[sent])
            sent += 1
        if len(received) >= len(capture) and len(echoes) == sent:
            break
    assert echoes == pings[:sent] and sent >= 10
    assert bytes(received[: len(capture)]) == capture
    await ws.close()


@pytest.mark.parametrize("capture", CAPTURE_FILES)
async def test_captures_pass_through_byte_identical(
    start_guacd, broker_for, token, captures_dir, capture
):
    protocol = capture.split("-")[0]
    workspace = {"vnc": "ws-vnc", "rdp": "ws-rdp", "ssh": "ws-ssh"}[protocol]
    server = await start_guacd(
        mode=Mode.REPLAY,
        captures_dir=captures_dir,
        first_frame_delay=0.0,
        replay_chunk=1000,
    )
    api = await broker_for(server.port)
    launched = await launch(api, token(), workspace)
    ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
    await ws.receive_str(timeout=10)
    expected = (GUACD_CAPTURES / capture).read_bytes()
    received = bytearray()
    frames = 0
    while len(received) < len(expected):
        msg = await ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        assert whole_instructions(msg.data)
        received += msg.data.encode()
        frames += 1
    assert bytes(received[: len(expected)]) == expected
    # Batched: far fewer frames than instructions.
    assert frames < len(Parser().feed(expected)) / 3
    await ws.close()


async def test_input_held_until_first_sync_so_vnc_never_crashes(start_guacd, broker_for, token):
    server = await start_guacd(first_frame_delay=0.5)
    api = await broker_for(server.port)
    launched = await launch(api, token())
    ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
    await ws.receive_str(timeout=10)
    # Like a browser whose user moves and clicks at once.
    for x in range(10):
        await ws.send_str(f"5.mouse,{len(str(x))}.{x},2.10;")
    await ws.send_str("5.mouse,3.100,3.100,1.1;")
    await ws.send_str("5.mouse,3.100,3.100,1.0;")
    await read_until(ws, lambda f: "4.sync," in f)
    await server.wait_for(
        lambda: sum(1 for i in server.received if i.opcode == "mouse") >= 2, timeout=10
    )
    assert server.crashes == 0
    # The click arrived: the desktop draws the orange square.
    frames = await read_until(ws, lambda f: "4.sync," in f and "3.img," in f)
    assert any("4.blob," in f for f in frames)
    await ws.close()


async def test_internal_instructions_never_reach_guacd(api, guacd, token):
    launched = await launch(api, token())
    ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
    await ws.receive_str(timeout=10)
    await read_until(ws, lambda f: "4.sync," in f)
    await ws.send_str("0.,4.ping,3.123;")
    await read_until(ws, lambda f: f == "0.,4.ping,3.123;")
    await ws.send_str("3.key,5.65307,1.1;")
    await guacd.wait_for(lambda: any(i.opcode == "key" for i in guacd.received), timeout=10)
    assert all(i.opcode != "" for i in guacd.received)
    await ws.close()


async def test_guacd_error_is_shown_then_closed_with_its_status(api, guacd, token):
    launched = await launch(api, token(), "ws-badpw")
    ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
    frames, code, reason = await finish(ws)
    assert frames[0].startswith("0.,36.")
    errors = [f for f in frames if "5.error," in f]
    assert len(errors) == 1 and "3.519;" in errors[0]
    assert (code, reason) == (1011, "519")
    # The session itself is still active: the user may retry with a fix.
    t = token()
    s = (await api.get(f"/api/sessions/{launched['session_id']}", t)).body
    assert s["status"] == "active"


async def test_guacd_unreachable_is_519(broker_for, token):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    api = await broker_for(port)
    launched = await launch(api, token())
    ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
    frames, code, reason = await finish(ws)
    assert (code, reason) == (1011, "519")
    assert frames and "guacd" in frames[-1]


@pytest.mark.parametrize("credential", ["bogus", "", "other-session", "ended", "other-user-jwt"])
async def test_bad_credentials_refused_before_guacd(api, guacd, token, credential):
    alice = token("alice")
    launched = await launch(api, alice)
    sid = launched["session_id"]
    other = await launch(api, alice, "ws-ssh")
    value = {
        "bogus": "bogus",
        "": "",
        "other-session": other["viewer_token"],
        "ended": launched["viewer_token"],
        "other-user-jwt": token("mallory"),
    }[credential]
    if credential == "ended":
        await api.post(f"/api/sessions/{sid}/disconnect", alice)
    before = guacd.connections
    ws = await open_tunnel(api, sid, value)
    frames, code, reason = await finish(ws)
    # A valid credential of another session or user finds nothing (516); the
    # rest proves nobody (769); the ended session's own token learns it ended.
    expected = {"ended": (1000, "0"), "other-session": (1002, "516")}
    expected["other-user-jwt"] = expected["other-session"]
    assert (code, reason) == expected.get(credential, (1008, "769"))
    assert not any(f.startswith("0.,36.") for f in frames)
    assert guacd.connections == before


async def test_owner_jwt_opens_the_viewer_and_reconnects(api, guacd, token):
    t = token()
    launched = await launch(api, t)
    sid = launched["session_id"]
    for credential in (t, launched["viewer_token"], launched["viewer_token"]):
        ws = await open_tunnel(api, sid, credential)
        assert UUID_MESSAGE.match(await ws.receive_str(timeout=10))
        await read_until(ws, lambda f: "4.sync," in f)
        await ws.close()
    assert (await api.get(f"/api/sessions/{sid}", t)).body["status"] == "active"


async def test_html5_session_has_no_desktop(api, guacd, token):
    launched = await launch(api, token(), "ws-wiki")
    ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
    _, code, reason = await finish(ws)
    assert (code, reason) == (1002, "768")


async def test_plain_http_to_tunnel_is_json_400(api, token):
    launched = await launch(api, token())
    r = await api.client.get(tunnel_url(launched["session_id"], launched["viewer_token"]))
    assert r.status == 400 and (await r.json())["detail"]


async def test_oversized_browser_message_closes_with_overrun(api, guacd, token):
    launched = await launch(api, token())
    ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
    await read_until(ws, lambda f: "4.sync," in f)
    big = "x" * 40000
    await ws.send_str(f"4.clip,{len(big)}.{big};")
    _, code, reason = await finish(ws)
    assert (code, reason) == (1009, "781")


async def test_slow_reader_applies_backpressure(broker_for, token):
    """A browser that stops reading makes the relay stop reading guacd: what
    guacd managed to write stays bounded while it has far more to send."""
    firehose = Firehose()
    await firehose.start()
    try:
        api = await broker_for(firehose.port)
        launched = await launch(api, token())
        ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
        await ws.receive_str(timeout=10)
        await asyncio.wait_for(firehose.stalled.wait(), 30)
        assert firehose.written < 48 * 1024 * 1024  # would be unbounded without backpressure
        relay_buffers = [
            r.ws._writer.transport.get_write_buffer_size()  # type: ignore[union-attr]
            for r in api.client.app[BROKER].streams.of(launched["session_id"])
        ]
        assert all(size < 8 * 1024 * 1024 for size in relay_buffers)
        # Reading again lets everything through, intact.
        before = firehose.written
        got = 0
        while got < before:
            msg = await ws.receive(timeout=10)
            assert whole_instructions(msg.data)
            got += len(msg.data)
        await ws.close()
    finally:
        await firehose.aclose()


class Firehose:
    """A guacd that hand-shakes, then writes blobs as fast as it is allowed to,
    and notes when its writes stop draining for a second."""

    BLOB = ("4.blob,1.1," + str(8000) + "." + "A" * 8000 + ";").encode()

    def __init__(self) -> None:
        self.written = 0
        self.stalled = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        parser = Parser()
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    return
                for instruction in parser.feed(data):
                    if instruction.opcode == "select":
                        writer.write(b"4.args,13.VERSION_1_5_0,8.hostname,4.port;")
                    elif instruction.opcode == "connect":
                        writer.write(b"5.ready,37.$00000000-0000-0000-0000-000000000000;")
                        await self._pour(writer)
                        return
        finally:
            writer.close()

    async def _pour(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"4.sync,1.1;")
        started = time.monotonic()
        while time.monotonic() - started < 60:
            writer.write(self.BLOB)
            self.written += len(self.BLOB)
            try:
                await asyncio.wait_for(writer.drain(), 1.0)
            except TimeoutError:
                self.stalled.set()
                await writer.drain()
                return

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def test_required_prompt_answers_reach_guacd_before_first_sync(
    start_guacd, broker_for, token
):
    server = await start_guacd(first_frame_delay=0.0, ask_credentials=frozenset({"vnc"}))
    api = await broker_for(server.port)
    launched = await launch(api, token())
    ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
    frames = await read_until(ws, lambda f: "8.required," in f)
    assert "8.username" in frames[-1] and "8.password" in frames[-1]
    # A mouse move now would be held (no sync yet); the argv streams pass.
    await ws.send_str("5.mouse,2.10,2.10,1.0;")
    for index, (name, value) in enumerate([("username", "bob"), ("password", "pw;,é")]):
        encoded = base64.b64encode(value.encode()).decode()
        stream = str(index)
        await ws.send_str(Instruction("argv", (stream, "text/plain", name)).encode())
        await ws.send_str(Instruction("blob", (stream, encoded)).encode())
        await ws.send_str(Instruction("end", (stream,)).encode())
    await read_until(ws, lambda f: "4.sync," in f)
    assert list(server.credentials_received) == [{"username": "bob", "password": "pw;,é"}]
    assert server.crashes == 0
    await ws.close()


async def test_clipboard_policy_reaches_guacd_and_the_viewer(api, guacd, token):
    launched = await launch(api, token(), "ws-locked")
    info = await api.client.get(
        f"/viewer/{launched['session_id']}/info",
        headers={"Authorization": f"Bearer {launched['viewer_token']}"},
    )
    assert (await info.json())["clipboard"] == {"copy": False, "paste": False}
    ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
    await read_until(ws, lambda f: "4.sync," in f)
    record = guacd.last_handshake
    assert record is not None
    assert record.parameters["disable-copy"] == "true"
    assert record.parameters["disable-paste"] == "true"
    assert record.parameters["read-only"] == "true"
    await ws.close()


async def test_recorded_workspace_tells_guacd_and_the_user(api, guacd, token):
    r = await api.launch("ws-recorded", token())
    assert r.status == 201 and r.body["security"]["recording"] is True
    sid = r.body["session_id"]
    info = await api.client.get(
        f"/viewer/{sid}/info", headers={"Authorization": f"Bearer {r.body['viewer_token']}"}
    )
    assert (await info.json())["recording"] is True  # the viewer shows it
    ws = await open_tunnel(api, sid, r.body["viewer_token"])
    await read_until(ws, lambda f: "4.sync," in f)
    record = guacd.last_handshake
    assert record is not None
    assert record.parameters["recording-path"] == "/var/lib/guacamole/recordings"
    assert record.parameters["recording-name"] == sid
    assert record.parameters["create-recording-path"] == "true"
    assert record.parameters["recording-include-keys"] == ""  # unset: keys not recorded
    await ws.close()
