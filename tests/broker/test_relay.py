"""The relay on its own: guacd's side is the other end of a socket pair (no
guacd, no broker), the browser a real aiohttp WebSocket client. And the relay
as one kind of stream among others in the broker's one registry."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from broker.core.events import SessionEnded
from broker.core.streams import OpenStreams
from broker.web.apps import ProxiedStream
from broker.web.relay import Diagnosis, Relay
from protocols.client_policy import BASE_OPCODES, MAX_CLIENT_STREAMS, allowed_opcodes
from protocols.guacd import GuacdConnection, GuacdEndpoint
from protocols.instruction import Instruction
from protocols.status import Ending, GuacamoleStatus

TIMEOUT = 10
TUNNEL_ID = re.compile(r"^0\.,36\.[0-9a-f-]{36};$")
SYNC = "4.sync,1.1;"
UNREACHABLE = "The remote desktop at 192.0.2.7:5900 could not be reached"
LEFT = b"10.disconnect;"  # what guacd gets when the viewer leaves, before the close


@dataclass
class Relayed:
    browser: aiohttp.ClientWebSocketResponse
    guacd_reader: asyncio.StreamReader
    guacd_writer: asyncio.StreamWriter
    relay: Relay
    result: asyncio.Future[Ending]  # what `Relay.run` returned

    async def from_guacd(self, size: int) -> str:
        """The next ``size`` bytes the relay wrote to guacd."""
        data = await asyncio.wait_for(self.guacd_reader.readexactly(size), TIMEOUT)
        return data.decode()

    async def to_browser(self, text: str) -> None:
        self.guacd_writer.write(text.encode())
        await self.guacd_writer.drain()

    async def browser_reads(self) -> str:
        return await self.browser.receive_str(timeout=TIMEOUT)

    async def browser_close(self) -> tuple[list[str], int, str]:
        """The text frames until the close, the close code and reason."""
        frames = []
        while True:
            msg = await self.browser.receive(timeout=TIMEOUT)
            if msg.type != WSMsgType.TEXT:
                assert msg.type == WSMsgType.CLOSE, msg
                return frames, int(msg.data), str(msg.extra)
            frames.append(msg.data)


LOST = "The remote desktop at 192.0.2.7:5900 cannot be reached"


class Diagnosed:
    """What the viewer's diagnosis says: nothing listened when guacd failed
    to connect; later, whether the server still answers."""

    def __init__(self, *, gone: bool = False) -> None:
        self._gone = gone
        self.asked = 0

    async def not_reached(self, said: str) -> Ending:
        return Ending(GuacamoleStatus.UPSTREAM_NOT_FOUND, UNREACHABLE)

    async def gone(self) -> Ending | None:
        self.asked += 1
        return Ending(GuacamoleStatus.UPSTREAM_NOT_FOUND, LOST) if self._gone else None


@pytest.fixture
def relay_allowed() -> frozenset[str]:
    """What the relay lets the browser send; parametrize to change it."""
    return BASE_OPCODES


@pytest.fixture
def relay_diagnosis() -> Diagnosis:
    """Why guacd gave up; parametrize to change it."""
    return Diagnosed()


@pytest.fixture
def relay_nudge() -> float:
    """How long guacd may be silent before the first sync before the relay
    writes it a ``nop``; long here so that tests read exact bytes."""
    return 60.0


@pytest.fixture
async def relayed(
    relay_allowed: frozenset[str], relay_nudge: float, relay_diagnosis: Diagnosis
) -> AsyncIterator[Relayed]:
    broker_end, guacd_end = socket.socketpair()
    relays: asyncio.Queue[Relay] = asyncio.Queue()
    result: asyncio.Future[Ending] = asyncio.get_running_loop().create_future()

    async def tunnel(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("guacamole",))
        await ws.prepare(request)
        reader, writer = await asyncio.open_connection(sock=broker_end)
        guacd = GuacdConnection(
            reader, writer, GuacdEndpoint("socketpair"), "VERSION_1_5_0", (), "$test"
        )
        relay = Relay(
            ws,
            guacd,
            allowed=relay_allowed,
            diagnosis=relay_diagnosis,
            nudge_interval=relay_nudge,
        )
        relays.put_nowait(relay)
        result.set_result(await relay.run())
        return ws

    app = web.Application()
    app.router.add_get("/tunnel", tunnel)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    guacd_reader, guacd_writer = await asyncio.open_connection(sock=guacd_end)
    http = aiohttp.ClientSession()
    try:
        browser = await http.ws_connect(server.make_url("/tunnel"), protocols=("guacamole",))
        relay = await asyncio.wait_for(relays.get(), TIMEOUT)
        pair = Relayed(browser, guacd_reader, guacd_writer, relay, result)
        assert TUNNEL_ID.match(await pair.browser_reads())  # the relay's first frame
        yield pair
    finally:
        await http.close()
        guacd_writer.close()
        await server.close()
        broker_end.close()


async def test_bytes_pass_both_ways(relayed: Relayed) -> None:
    drawn = "4.size,1.0,4.1024,3.768;" + SYNC
    await relayed.to_browser(drawn)
    assert await relayed.browser_reads() == drawn
    key = "3.key,5.65307,1.1;"
    await relayed.browser.send_str(key)
    assert await relayed.from_guacd(len(key)) == key
    # A whole instruction split over two reads reaches the browser whole.
    await relayed.to_browser("4.sync,")
    await relayed.to_browser("1.2;")
    assert await relayed.browser_reads() == "4.sync,1.2;"


async def test_ping_is_echoed_and_never_reaches_guacd(relayed: Relayed) -> None:
    ping = "0.,4.ping,13.1700000000000;"
    await relayed.browser.send_str(ping)
    assert await relayed.browser_reads() == ping
    await relayed.browser.send_str("3.nop;")
    assert await relayed.from_guacd(len("3.nop;")) == "3.nop;"  # the first thing guacd got


async def test_input_is_held_until_guacds_first_sync(relayed: Relayed) -> None:
    moves = ["5.mouse,2.10,2.10,1.0;", "5.mouse,2.20,2.20,1.0;"]
    key = "3.key,5.65307,1.1;"
    for text in [*moves, key, "3.nop;"]:
        await relayed.browser.send_str(text)
    # The keep-alive went through; the input sent before it did not.
    assert await relayed.from_guacd(len("3.nop;")) == "3.nop;"
    await relayed.to_browser(SYNC)
    assert await relayed.browser_reads() == SYNC
    # Then the input, the moves coalesced into the latest position.
    held = moves[1] + key
    assert await relayed.from_guacd(len(held)) == held


@pytest.mark.parametrize(
    ("ending", "code", "reason"),
    [
        (Ending(GuacamoleStatus.SESSION_TIMEOUT, "The session was idle for too long"), 1002, "522"),
        (Ending(GuacamoleStatus.SERVER_BUSY, "The broker is restarting"), 1008, "513"),
        (Ending(GuacamoleStatus.SUCCESS), 1000, "0"),
    ],
)
async def test_end_closes_the_browser_with_the_status(
    relayed: Relayed, ending: Ending, code: int, reason: str
) -> None:
    relayed.relay.end(ending)
    frames, closed_code, closed_reason = await relayed.browser_close()
    assert (closed_code, closed_reason) == (code, reason)
    if ending.message is None:
        assert frames == []
    else:
        assert frames == [Instruction.of("error", ending.message, int(ending.status)).encode()]
    assert await asyncio.wait_for(relayed.result, TIMEOUT) == ending
    # guacd is told the viewer left, then let go (else it keeps the workspace ~15 s).
    assert await asyncio.wait_for(relayed.guacd_reader.read(), TIMEOUT) == LEFT


async def test_guacd_is_told_when_the_browser_goes_away(relayed: Relayed) -> None:
    await first_sync(relayed)
    await relayed.browser.close()  # a closed tab
    # (The test server cancels the handler once the browser is gone: guacd is
    # told even then.)
    assert await asyncio.wait_for(relayed.guacd_reader.read(), TIMEOUT) == LEFT


async def test_a_disconnect_after_the_first_sync_is_a_normal_end(relayed: Relayed) -> None:
    await relayed.to_browser(SYNC + "10.disconnect;")
    relayed.guacd_writer.close()
    frames, code, reason = await relayed.browser_close()
    assert "".join(frames).startswith(SYNC + "10.disconnect;")  # passed on as it is
    assert (code, reason) == (1002, "518")


@pytest.mark.parametrize("split", [False, True])
async def test_a_disconnect_before_the_first_sync_is_an_unreachable_workspace(
    relayed: Relayed, split: bool
) -> None:
    """guacd 1.5.5 cannot reach a VNC or SSH server: ``ready``, maybe some
    drawing (SSH draws its terminal), never a ``sync``, then ``disconnect``.
    The browser must not get that ``disconnect`` (it would show "You
    disconnected"), but the broker's error naming the address, then 519."""
    drawing = "4.size,1.0,4.1024,3.768;4.rect,1.0,1.0,1.0,4.1024,3.768;"
    if split:
        await relayed.to_browser(drawing)
        assert await relayed.browser_reads() == drawing
        await relayed.to_browser("10.disconnect;")
    else:
        await relayed.to_browser(drawing + "10.disconnect;")
    frames, code, reason = await relayed.browser_close()
    assert "disconnect" not in "".join(frames)
    assert frames[-1] == Instruction.of("error", UNREACHABLE, 519).encode()
    assert (code, reason) == (1011, "519")
    ending = await asyncio.wait_for(relayed.result, TIMEOUT)
    assert ending == Ending(GuacamoleStatus.UPSTREAM_NOT_FOUND, UNREACHABLE)


@pytest.mark.parametrize("relay_nudge", [0.05])
async def test_a_silent_guacd_is_nudged_until_the_first_sync(relayed: Relayed) -> None:
    """guacd 1.5.5 sends the ``disconnect`` of a failed VNC connection only
    when the client writes: the relay writes ``nop`` while guacd is silent
    before its first ``sync``, so the failure shows in about a second."""
    assert await relayed.from_guacd(len("3.nop;")) == "3.nop;"
    await relayed.to_browser("10.disconnect;")  # guacd's answer to a failed connection
    frames, code, reason = await relayed.browser_close()
    assert (code, reason, frames) == (1011, "519", [error(UNREACHABLE, 519)])


def error(message: str, status: int) -> str:
    return Instruction.of("error", message, status).encode()


async def test_one_session_end_reaches_every_kind_of_stream(relayed: Relayed) -> None:
    """A guacd relay and a proxied HTML5 stream held for one session both end
    through the one registry, each in its own terms."""
    streams = OpenStreams()
    proxied = ProxiedStream()
    streams.add("s-1", relayed.relay)
    streams.add("s-1", proxied)
    streams.add("s-2", other := ProxiedStream())
    assert streams.count() == 3

    await streams.on_session_ended(SessionEnded("s-1", "workspace_stop"))

    frames, code, reason = await relayed.browser_close()
    assert (code, reason) == (1002, "523")  # SESSION_CLOSED, what guacamole-common-js shows
    assert frames == [Instruction.of("error", "The workspace was stopped", 523).encode()]
    assert proxied.close() == (4000, "session ended")
    assert other.ending is None  # another session's stream goes on
    streams.remove("s-1", relayed.relay)
    streams.remove("s-1", proxied)
    assert streams.session_ids() == ["s-2"]


# -- what the browser may send (protocols.client_policy) ------------------------

EVERYTHING = allowed_opcodes(
    {"disable-paste": "false", "enable-audio-input": "true", "enable-sftp": "true"}
)
KEY = "3.key,5.65307,1.1;"


def i(opcode: str, *args: str) -> str:
    return Instruction(opcode, args).encode()


async def first_sync(relayed: Relayed) -> None:
    await relayed.to_browser(SYNC)
    assert await relayed.browser_reads() == SYNC


async def assert_refused(relayed: Relayed) -> None:
    """The tunnel closed with CLIENT_BAD_TYPE, the browser was told why, and
    guacd got nothing more before the relay let it go."""
    frames, code, reason = await relayed.browser_close()
    assert (code, reason) == (1003, "783")
    assert len(frames) == 1 and frames[0].startswith("5.error,") and frames[0].endswith("3.783;")
    received = await asyncio.wait_for(relayed.guacd_reader.read(), TIMEOUT)
    assert received == LEFT
    ending = await asyncio.wait_for(relayed.result, TIMEOUT)
    assert ending.status == GuacamoleStatus.CLIENT_BAD_TYPE


@pytest.mark.parametrize(
    "instruction",
    [
        i("select", "vnc"),
        i("connect", "VERSION_1_5_0", "evil.example", "22"),
        i("args", "VERSION_1_5_0"),
        i("name", "mallory"),
        i("error", "forged", "512"),
        i("clipboard", "0", "text/plain"),  # paste is not allowed here
        i("audio", "0", "audio/L16;rate=44100,channels=2"),  # no audio input
        i("file", "0", "text/plain", "a.txt"),  # no file transfer
        i("get", "1", "/etc/passwd"),
        i("blob", "7", "AAAA"),  # a stream the browser never opened
        i("end", "7"),
    ],
)
async def test_what_a_guacamole_client_never_sends_closes_783_and_never_reaches_guacd(
    relayed: Relayed, instruction: str
) -> None:
    await first_sync(relayed)
    await relayed.browser.send_str(KEY)  # typing reaches guacd
    assert await relayed.from_guacd(len(KEY)) == KEY
    await relayed.browser.send_str(instruction)
    await assert_refused(relayed)


async def test_refused_even_while_input_is_held(relayed: Relayed) -> None:
    """Before guacd's first ``sync`` input is held, not dropped; a handshake
    instruction is refused at once, not held and released later."""
    await relayed.browser.send_str(KEY)
    await relayed.browser.send_str(i("connect", "VERSION_1_5_0", "evil.example"))
    await assert_refused(relayed)


@pytest.mark.parametrize("relay_allowed", [EVERYTHING])
async def test_everything_guacamole_common_js_sends_reaches_guacd(relayed: Relayed) -> None:
    await first_sync(relayed)
    sent = [
        i("size", "1280", "720"),
        KEY,
        i("mouse", "10", "20", "1"),
        i("touch", "0", "10", "20", "5", "5", "0", "1"),
        i("sync", "1"),
        i("nop"),
        i("ack", "90", "OK", "0"),  # the answer to a blob on guacd's stream 90
        *(i("clipboard", "0", "text/plain"), i("blob", "0", "aGk="), i("end", "0")),
        *(i("audio", "1", "audio/L16;rate=44100,channels=2"), i("blob", "1", "AAAA")),
        *(i("file", "2", "application/pdf", "a.pdf"), i("blob", "2", "JVBE"), i("end", "2")),
        *(i("put", "5", "3", "text/plain", "/b.txt"), i("blob", "3", "Yg=="), i("end", "3")),
        i("get", "5", "/b.txt"),
        *(i("pipe", "4", "text/plain", "STDIN"), i("blob", "4", "eA=="), i("end", "4")),
        *(i("argv", "0", "text/plain", "color-depth"), i("blob", "0", "MTY="), i("end", "0")),
        i("end", "1"),
    ]
    for text in sent:
        await relayed.browser.send_str(text)
    expected = "".join(sent)
    assert await relayed.from_guacd(len(expected.encode())) == expected
    await relayed.browser.send_str(i("disconnect"))
    assert await relayed.from_guacd(len("10.disconnect;")) == "10.disconnect;"


@pytest.mark.parametrize("relay_allowed", [EVERYTHING])
async def test_a_stream_ended_by_the_browser_takes_no_more_data(relayed: Relayed) -> None:
    await first_sync(relayed)
    sent = [i("clipboard", "0", "text/plain"), i("blob", "0", "aGk="), i("end", "0")]
    for text in sent:
        await relayed.browser.send_str(text)
    expected = "".join(sent)
    assert await relayed.from_guacd(len(expected)) == expected
    await relayed.browser.send_str(i("blob", "0", "aGk="))
    await assert_refused(relayed)


async def test_the_browser_cannot_open_streams_without_bound(relayed: Relayed) -> None:
    await first_sync(relayed)
    opens = [i("argv", str(n), "text/plain", "username") for n in range(MAX_CLIENT_STREAMS)]
    for text in opens:
        await relayed.browser.send_str(text)
    expected = "".join(opens)
    assert await relayed.from_guacd(len(expected)) == expected
    await relayed.browser.send_str(i("argv", "64", "text/plain", "username"))
    await assert_refused(relayed)


async def test_a_partial_instruction_as_the_viewer_joins_is_skipped(relayed: Relayed) -> None:
    """guacd 1.5.5 may send a joining user the tail of an instruction whose
    head went to no one (its broadcast socket picks the users at every write):
    before the first ``sync`` the relay drops that tail and goes on, where it
    used to end the connection with "guacd sent malformed data" (515)."""
    before = "4.size,1.3,2.16,3.768;"
    after = "5.cfill,2.14,1.1,1.0,1.0,1.0,3.255;" + SYNC
    await relayed.to_browser(before + "304,2.40,3.456;" + after)
    received = ""
    while "4.sync," not in received:
        received += await relayed.browser_reads()
    assert received == before + after
    assert relayed.relay.stats.join_repairs == 1
    key = "3.key,5.65307,1.1;"
    await relayed.browser.send_str(key)  # the viewer goes on: input reaches guacd
    assert await relayed.from_guacd(len(key)) == key


@pytest.mark.parametrize("relay_diagnosis", [Diagnosed(gone=True)])
async def test_a_disconnect_from_a_server_now_unreachable_is_an_error(relayed: Relayed) -> None:
    """After the first ``sync``, guacd's ``disconnect`` that the viewer did not
    ask for, when the server cannot be reached now (the connection was lost,
    or SSH's login prompt could not connect): the viewer gets that error, not
    the ``disconnect`` that reads as a normal end."""
    await relayed.to_browser(SYNC)
    assert await relayed.browser_reads() == SYNC
    await relayed.to_browser("4.rect,1.0,1.0,1.0,1.1,1.1;10.disconnect;")
    frames, code, reason = await relayed.browser_close()
    assert frames == ["4.rect,1.0,1.0,1.0,1.1,1.1;", error(LOST, 519)]
    assert (code, reason) == (1011, "519")


async def test_a_disconnect_from_a_server_still_answering_is_a_normal_end(
    relayed: Relayed, relay_diagnosis: Diagnosed
) -> None:
    await relayed.to_browser(SYNC)
    assert await relayed.browser_reads() == SYNC
    await relayed.to_browser("10.disconnect;")
    assert await relayed.browser_reads() == "10.disconnect;"
    assert relay_diagnosis.asked == 1


async def test_the_viewers_own_disconnect_is_not_diagnosed(
    relayed: Relayed, relay_diagnosis: Diagnosed
) -> None:
    await relayed.to_browser(SYNC)
    assert await relayed.browser_reads() == SYNC
    await relayed.browser.send_str("10.disconnect;")
    assert await relayed.from_guacd(len("10.disconnect;")) == "10.disconnect;"
    await relayed.to_browser("10.disconnect;")
    assert await relayed.browser_reads() == "10.disconnect;"
    assert relay_diagnosis.asked == 0


async def test_upstream_not_found_after_the_first_sync_names_the_address(relayed: Relayed) -> None:
    """guacd's SSH login prompt draws (a ``sync``) before it connects; when it
    cannot, it says 519 "Aborted. See logs.": the broker's words instead."""
    await relayed.to_browser(SYNC)
    assert await relayed.browser_reads() == SYNC
    await relayed.to_browser("4.rect,1.0,1.0,1.0,1.1,1.1;" + error("Aborted. See logs.", 519))
    frames, code, reason = await relayed.browser_close()
    assert frames == ["4.rect,1.0,1.0,1.0,1.1,1.1;", error(UNREACHABLE, 519)]
    assert (code, reason) == (1011, "519")


# -- the browser's answers to guacd's frames ---------------------------------------


def answer(stamp: int) -> str:
    """What guacamole-common-js sends for each ``sync`` it has drawn."""
    return i("sync", str(stamp))


async def test_sync_answers_reach_guacd_in_order_among_the_input(relayed: Relayed) -> None:
    """Hundreds of answers sent without pause, input between them: guacd gets
    every byte, in the order the browser sent it."""
    await first_sync(relayed)
    sent = []
    for n in range(600):
        sent.append(answer(1_700_000_000_000 + n))
        if n % 7 == 0:
            sent.append(i("mouse", str(n), str(n), "0"))
        if n % 50 == 0:
            sent += [KEY, i("nop")]
    for text in sent:
        await relayed.browser.send_str(text)
    expected = "".join(sent)
    assert await relayed.from_guacd(len(expected)) == expected


async def test_sync_answers_pass_while_input_is_held(relayed: Relayed) -> None:
    """Before guacd's first ``sync`` the browser's answers (to a previous
    viewer's frames) pass at once; the input around them waits for it."""
    move = i("mouse", "10", "20", "0")
    for text in [move, answer(1), KEY, answer(2)]:
        await relayed.browser.send_str(text)
    assert await relayed.from_guacd(len(answer(1) + answer(2))) == answer(1) + answer(2)
    await first_sync(relayed)
    assert await relayed.from_guacd(len(move + KEY)) == move + KEY


@pytest.mark.parametrize(
    "text",
    [
        "4.sync,2.1;",  # the length says 2
        "4.sync,1.1;4.sync,1.2;",  # two instructions in one message
        "4.sync,01.12;",  # a length that is no length
        "4.sync,1.1,",
    ],
)
async def test_what_only_looks_like_a_sync_answer_is_refused(relayed: Relayed, text: str) -> None:
    await first_sync(relayed)
    await relayed.browser.send_str(text)
    frames, code, reason = await relayed.browser_close()
    assert reason == str(int(GuacamoleStatus.CLIENT_BAD_REQUEST))
    assert await asyncio.wait_for(relayed.guacd_reader.read(), TIMEOUT) == LEFT
