"""Fuzzing the Guacamole codec and the browser side of the viewer relay.

Whatever a browser sends (any text, near-valid instructions, binary frames,
oversized messages) ends at most its own tunnel, with a Guacamole status the
viewer can show, and never disturbs another session: a healthy viewer of a
second session keeps streaming through every example, guacd only ever sees
whole instructions, and nothing is logged as an error."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.web.relay import MAX_BROWSER_MESSAGE
from protocols.errors import InstructionError
from protocols.instruction import Instruction, Parser, parse_instruction
from protocols.status import GuacamoleStatus
from tests.security.conftest import Env

pytestmark = pytest.mark.db

OPCODES = ["mouse", "key", "size", "clipboard", "blob", "end", "ack", "nop", "sync", "argv", ""]
# What a tunnel may close with after fuzzed input: the browser left or was
# refused for its input, or guacd answered the (well-formed) instructions.
STATUS_CODES = {int(s) for s in GuacamoleStatus} - {int(GuacamoleStatus.SERVER_ERROR)}


# -- the codec, pure -----------------------------------------------------------------


def instructions() -> st.SearchStrategy[str]:
    element = st.text(max_size=12)
    return st.builds(
        lambda op, args: Instruction(op, tuple(args)).encode(),
        st.sampled_from(OPCODES) | element,
        st.lists(element | st.integers(-(10**6), 10**6).map(str), max_size=6),
    )


def mutated() -> st.SearchStrategy[str]:
    """A valid instruction with a few characters inserted, replaced or removed."""

    def mutate(text: str, data: st.DataObject) -> str:
        for _ in range(data.draw(st.integers(1, 3))):
            at = data.draw(st.integers(0, len(text)))
            cut = data.draw(st.integers(0, 3))
            text = (
                text[:at]
                + data.draw(st.text("0123456789.,;- \x00é🙂", max_size=3))
                + text[at + cut :]
            )
        return text

    return st.builds(mutate, instructions(), st.data())


@settings(max_examples=500)
@given(st.one_of(st.text(max_size=300), instructions(), mutated()))
def test_browser_side_parser_accepts_one_instruction_or_raises_the_protocol_error(
    text: str,
) -> None:
    try:
        instruction = parse_instruction(text)
    except InstructionError as exc:
        assert exc.status in (
            GuacamoleStatus.CLIENT_BAD_REQUEST,
            GuacamoleStatus.CLIENT_OVERRUN,
        ), exc.status
        return
    # Accepted: one whole instruction (guacd reads it the same way; a length
    # written with leading zeros is still that length).
    assert parse_instruction(instruction.encode()) == instruction
    assert text.endswith(";")


@settings(max_examples=300)
@given(st.lists(st.one_of(instructions(), mutated(), st.text(max_size=50)), max_size=8))
def test_stream_parser_on_concatenated_input(pieces: list[str]) -> None:
    parser = Parser()
    with contextlib.suppress(InstructionError):
        for instruction in parser.feed("".join(pieces).encode()):
            assert isinstance(instruction, Instruction)


# -- the relay -----------------------------------------------------------------------


@dataclass
class Viewer:
    """A viewer reading its stream in the background, as guacamole-common-js does."""

    ws: aiohttp.ClientWebSocketResponse
    frames: int = 0
    syncs: int = 0
    progressed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.frames += 1
                if "4.sync," in msg.data:
                    self.syncs += 1
                    self.progressed.set()
                    # Keep-alive, as the browser's nop every few seconds: a
                    # silent client is dropped by guacd after 15 s.
                    await self.ws.send_str("3.nop;")

    async def keeps_streaming(self, limit: float = 10) -> None:
        """Wait for a ``sync`` that arrives after this call (the stream is alive)."""
        self.progressed.clear()
        await asyncio.wait_for(self.progressed.wait(), limit)
        assert not self.ws.closed


@pytest.fixture
async def healthy(env: Env, token: Callable[..., str]) -> AsyncIterator[Viewer]:
    launched = await env.launch(token("carol"), "ws-shared")
    ws = await env.client.ws_connect(
        env.tunnel(launched["session_id"], launched["viewer_token"]), protocols=("guacamole",)
    )
    viewer = Viewer(ws)
    viewer.task = asyncio.create_task(viewer.read())
    await viewer.keeps_streaming()
    yield viewer
    await ws.close()
    await viewer.task


@pytest.fixture
async def fuzzed(env: Env, token: Callable[..., str]) -> dict[str, str]:
    launched: dict[str, str] = await env.launch(token("alice", roles=["finance"]), "ws-finance")
    return launched


async def send_all(
    env: Env, launched: dict[str, str], messages: list[str | bytes]
) -> tuple[int | None, str]:
    """Open the fuzzed session's tunnel, send ``messages`` (until it closes), and
    return how it closed (None: still open, closed by us)."""
    ws = await env.client.ws_connect(
        env.tunnel(launched["session_id"], launched["viewer_token"]), protocols=("guacamole",)
    )
    assert (await ws.receive_str(timeout=10)).startswith("0.,36.")
    for message in messages:
        if ws.closed:
            break
        with contextlib.suppress(ConnectionError):
            if isinstance(message, bytes):
                await ws.send_bytes(message)
            else:
                await ws.send_str(message)
    # A ping must still be answered, or the tunnel has closed with a status.
    with contextlib.suppress(ConnectionError):
        await ws.send_str("0.,4.ping,13.1700000000000;")
    while True:
        msg = await ws.receive(timeout=10)
        if msg.type == aiohttp.WSMsgType.TEXT and msg.data == "0.,4.ping,13.1700000000000;":
            await ws.close()
            return None, ""
        if msg.type == aiohttp.WSMsgType.CLOSE:
            return int(msg.data), str(msg.extra or "")
        if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return ws.close_code, ""


messages = st.lists(
    st.one_of(
        instructions(),
        mutated(),
        st.text(max_size=200),
        st.binary(max_size=64),
    ),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sent=messages)
async def test_fuzzed_tunnel_never_disturbs_another_session(
    env: Env,
    healthy: Viewer,
    fuzzed: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    sent: list[str | bytes],
) -> None:
    code, reason = await send_all(env, fuzzed, sent)
    if code is not None:
        # Closed for its input, with a status the viewer can show.
        assert reason.isdigit() and int(reason) in STATUS_CODES, (code, reason, sent)
        status = GuacamoleStatus(int(reason))
        assert code == status.websocket_code
    await healthy.keeps_streaming()
    assert env.guacd.crashes == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize(
    "size",
    [MAX_BROWSER_MESSAGE + 1, 200_000, (1 << 20) + 1, 3 << 20],
    ids=["just-over", "200k", "just-over-1MiB", "3MiB"],
)
async def test_oversized_message_closes_only_its_tunnel_with_overrun(
    env: Env, healthy: Viewer, fuzzed: dict[str, str], size: int
) -> None:
    big = "x" * size
    code, reason = await send_all(env, fuzzed, [f"4.clip,{size}.{big};"])
    assert (code, reason) == (1009, "781")
    await healthy.keeps_streaming()
    # The fuzzed session itself is still active: a new tunnel works.
    assert await send_all(env, fuzzed, ["3.nop;"]) == (None, "")
