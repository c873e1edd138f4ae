"""The relay: one viewer's stream between the browser's WebSocket and guacd.

This is the product's hot path. guacd's bytes are framed by a
`BoundaryScanner` (arithmetic per element, no object per instruction, no
logging) and forwarded as text frames that each hold whole instructions, as
many as one read brought (that is the batching: one frame per read, up to
``READ_SIZE``). ASCII frames (nearly all: blobs are base64) go out without a
decode/encode round trip; others are checked as UTF-8 first.

Browser to guacd: each message must be exactly one instruction. Internal
instructions (empty opcode) are never forwarded: ``ping`` is echoed at once,
in a frame of its own, so it always lands between whole instructions. Only
what a Guacamole client sends passes (`protocols.client_policy`, the set
computed once per relay from the connection's parameters): anything else, or
a ``blob``/``end`` on a stream the browser did not open, closes the tunnel
with CLIENT_BAD_TYPE (783) before it reaches guacd. Input
is held until guacd's first ``sync`` (guacd 1.5.5's VNC plugin crashes on a
``mouse`` before the connection is up); held mouse moves are coalesced. The
answers to guacd's ``required`` prompt (``argv`` streams) pass at once.

Before the first ``sync`` the scanner also skips the tail of an instruction
whose head guacd 1.5.5 sent to no one (its race when a user joins; see
`BoundaryScanner`): logged and counted (``guacd_join_repairs``), not fatal.

The browser's answers to guacd's frames (``4.sync,N.<timestamp>;``, about
one per frame) are recognised by their shape and length and forwarded without
a parse. What goes to guacd is queued and written once per loop pass, so
messages that arrive together cost one ``send``.

Backpressure: a slow browser makes ``send_frame`` wait on the socket, so the
relay stops reading guacd and TCP slows guacd down; nothing grows unbounded.
A slow guacd does the same to the browser: once ``GUACD_BACKLOG`` bytes wait
for it, the relay stops reading the browser until they drain.

The relay ends when either side closes, when guacd sends ``error`` (passed to
the browser first), or when `Relay.end` is called (the session ended, the
broker drains). The WebSocket is closed with the Guacamole status's close code
and the decimal status as the reason, which is what guacamole-common-js reads.
guacd is sent ``disconnect`` before its socket closes, whatever ended the
relay: without it guacd 1.5.5 keeps the connection to the workspace open about
15 s ("User is not responding"), and an RDP session with it.

A ``disconnect`` from guacd before its first ``sync`` is a failure to connect,
not a normal end: guacd 1.5.5 says nothing else when it cannot reach a VNC or
SSH server, nor when a VNC server refuses the password; for RDP it says
UPSTREAM_NOT_FOUND "Server refused connection" both for an unreachable server
and for a refused NLA login. Neither is forwarded as it is (the browser would
show "You disconnected", or guacd's vague text): the relay asks its
`Diagnosis` for the ending, which tells the two apart (the viewer's probes
the address: a server that accepts a TCP connection was reached and refused
the login). A ``disconnect`` after the first ``sync`` that the viewer did
not ask for is asked about too: when the server cannot be reached any more
(the connection was lost, or an SSH login prompt could not connect), the
viewer gets that error instead of a normal end. guacd sends that ``disconnect`` only once
the client writes, so until the first ``sync`` the relay writes ``nop`` to
guacd when it has been silent for ``NUDGE_INTERVAL`` seconds (the browser's
own keep-alive comes only every 5 s).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import WSCloseCode, WSMsgType, web

from protocols.client_policy import (
    BASE_OPCODES,
    MAX_CLIENT_STREAMS,
    STREAM_OPCODES,
    STREAM_OPENERS,
)
from protocols.errors import InstructionError
from protocols.guacd import GuacdConnection
from protocols.instruction import BoundaryScanner, Instruction, parse_instruction
from protocols.status import Ending, GuacamoleStatus

log = logging.getLogger(__name__)

READ_SIZE = 65536
MAX_BROWSER_MESSAGE = 8192 * 4 + 64  # guacd's 8192-character limit, in UTF-8 bytes
WRITE_TIMEOUT = 15.0
NUDGE_INTERVAL = 1.0
# Browser to guacd: wait for guacd (up to WRITE_TIMEOUT) only once this much
# is buffered for it (asyncio's own high-water mark), and let other streams
# run at least every YIELD_EVERY messages handled without waiting.
GUACD_BACKLOG = 65536
YIELD_EVERY = 32


class Diagnosis(Protocol):
    """What the relay asks when guacd gives up on the workspace: guacd 1.5.5
    says the same (a bare ``disconnect``, or RDP's "Server refused
    connection") whether the server is unreachable or refused the login."""

    async def not_reached(self, said: str) -> Ending:
        """The ending when guacd failed before its first ``sync``; ``said`` is
        guacd's own text ("" for a bare ``disconnect``; its catch-all left out)."""

    async def gone(self) -> Ending | None:
        """After the first ``sync``, guacd said ``disconnect`` without the
        viewer asking: the ending when the server cannot be reached now (the
        connection was lost, or an SSH login prompt could not connect), None
        when it can (a normal end: logged off, ``exit``)."""


class Undiagnosed:
    """The default `Diagnosis`, where the address is not known."""

    async def not_reached(self, said: str) -> Ending:
        message = "The remote desktop could not be reached, or it refused the connection"
        return Ending(GuacamoleStatus.UPSTREAM_NOT_FOUND, f"{message}: {said}" if said else message)

    async def gone(self) -> Ending | None:
        return None


DISCONNECT = b"10.disconnect;"
NOP = b"3.nop;"
_BEFORE_SYNC = frozenset({"nop", "sync", "disconnect"})


@dataclass(slots=True)
class RelayStats:
    bytes_to_browser: int = 0
    frames_to_browser: int = 0
    messages_from_browser: int = 0
    join_repairs: int = 0  # guacd's partial instructions skipped (`BoundaryScanner`)


def error_instruction(message: str, status: GuacamoleStatus) -> str:
    return Instruction.of("error", message, int(status)).encode()


class TunnelSocket(web.WebSocketResponse):
    """The browser's WebSocket. A message past ``max_msg_size`` is refused by
    aiohttp itself, which closes with 1009 and no reason; guacamole-common-js
    reads the reason as the Guacamole status (without one it shows
    SERVER_ERROR), so that close says CLIENT_OVERRUN, "781", like the relay's own."""

    async def close(
        self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True
    ) -> bool:
        if code == WSCloseCode.MESSAGE_TOO_BIG and not message:
            message = str(int(GuacamoleStatus.CLIENT_OVERRUN)).encode()
        return await super().close(code=code, message=message, drain=drain)


async def close_websocket(ws: web.WebSocketResponse, ending: Ending) -> None:
    """Send the ``error`` instruction (if any) and close with the status's code
    and the decimal status as reason. Never raises."""
    try:
        if ending.message is not None and ending.status != GuacamoleStatus.SUCCESS:
            await asyncio.wait_for(ws.send_str(error_instruction(ending.message, ending.status)), 2)
        await asyncio.wait_for(
            ws.close(code=ending.status.websocket_code, message=str(int(ending.status)).encode()),
            5,
        )
    except (ConnectionError, TimeoutError, RuntimeError):
        pass


class Relay:
    """Pumps one browser WebSocket and one guacd connection until either ends.

    ``on_input`` is called when the user sends input (mouse or key), at most
    once every ``input_interval`` seconds, for the idle limit. ``allowed`` is
    the set of opcodes the browser may send (`protocols.client_policy`; by
    default no clipboard, audio or file transfer). ``on_first_sync`` is called
    once, when guacd's first ``sync`` arrives (`synced`); ``before_close`` is
    awaited with the ending just before the browser is told. The caller owns
    ``ws`` (already prepared) and ``guacd`` and must call `run` once; `end`
    may be called from anywhere. ``diagnosis`` tells why guacd gave up on the
    workspace (`Diagnosis`; it should name the address);
    ``nudge_interval`` is how long guacd may be silent before the first
    ``sync`` before the relay writes it a ``nop``.
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        guacd: GuacdConnection,
        *,
        held_limit: int = 256,
        on_input: Callable[[], None] | None = None,
        input_interval: float = 30.0,
        allowed: frozenset[str] = BASE_OPCODES,
        on_first_sync: Callable[[], None] | None = None,
        before_close: Callable[[Ending], Awaitable[None]] | None = None,
        diagnosis: Diagnosis | None = None,
        nudge_interval: float = NUDGE_INTERVAL,
    ) -> None:
        self.ws = ws
        self.guacd = guacd
        self.tunnel_id = str(uuid.uuid4())
        self.stats = RelayStats()
        self._held: list[bytes] | None = []
        self._to_guacd: list[bytes] = []  # written once per loop pass (`_flush`)
        self._sync_passes = "sync" in allowed
        self._held_limit = held_limit
        self._held_mask: tuple[str, ...] | None = None
        self._allowed = allowed
        self._diagnosis = diagnosis or Undiagnosed()
        self._viewer_left = False  # the viewer sent ``disconnect``
        self._nudge_interval = nudge_interval
        self._streams: dict[str, str] = {}  # the browser's open streams: index -> opener
        self._on_input = on_input
        self._input_interval = input_interval
        self._last_input = 0.0
        self._ending: asyncio.Future[Ending] = asyncio.get_running_loop().create_future()
        self._on_first_sync = on_first_sync
        self._before_close = before_close
        self.synced = False  # guacd's first ``sync`` arrived: the desktop is up

    def end(self, ending: Ending) -> None:
        """Stop the relay with ``ending`` (first caller wins)."""
        if not self._ending.done():
            self._ending.set_result(ending)

    async def run(self) -> Ending:
        """Relay until the end; closes the WebSocket and guacd. Returns why it ended."""
        await self.ws.send_str(Instruction("", (self.tunnel_id,)).encode())
        # Ended before it ran (its session ended while guacd was connecting):
        # no pump to start, and none left unawaited.
        pumps = (
            []
            if self._ending.done()
            else [
                asyncio.create_task(self._guard(self._guacd_to_browser())),
                asyncio.create_task(self._guard(self._browser_to_guacd())),
            ]
        )
        try:
            ending = await self._ending
        finally:
            for task in pumps:
                task.cancel()  # neither pump writes again: what they wrote goes first
            self._leave_guacd()
        await asyncio.gather(*pumps, return_exceptions=True)
        await self.guacd.aclose()  # bounded; the disconnect is on its way already
        if self._before_close is not None:
            await self._before_close(ending)
        await close_websocket(self.ws, ending)
        return ending

    def _leave_guacd(self) -> None:
        """Tell guacd the viewer left and close its socket (asyncio sends what
        is buffered before it closes; `GuacdConnection.aclose` bounds the wait)."""
        writer = self.guacd.writer
        if not writer.is_closing():
            self._flush()
            writer.write(DISCONNECT)
            writer.close()

    async def _guard(self, pump: Coroutine[Any, Any, Ending]) -> None:
        try:
            ending = await pump
        except asyncio.CancelledError:
            raise
        except (ConnectionError, TimeoutError) as exc:
            ending = Ending(
                GuacamoleStatus.UPSTREAM_UNAVAILABLE, f"Connection lost ({type(exc).__name__})"
            )
        except Exception:
            log.exception("relay failed")
            ending = Ending(GuacamoleStatus.SERVER_ERROR, "Internal error in the relay")
        self.end(ending)

    # -- guacd -> browser (the hot path) --------------------------------------

    async def _guacd_to_browser(self) -> Ending:
        scanner = BoundaryScanner(repair_joins=True)
        reader = self.guacd.reader
        send = self.ws.send_frame
        stats = self.stats
        while True:
            if self._held is None:
                data = await reader.read(READ_SIZE)
            else:
                data = await self._read_before_sync(reader)
            if not data:
                return self._guacd_closed(scanner)
            try:
                ready = scanner.feed(data)
            except InstructionError:
                return Ending(GuacamoleStatus.UPSTREAM_ERROR, "guacd sent malformed data")
            if scanner.repairs > self.stats.join_repairs:
                self._repaired(scanner)
            if ready:
                frame = scanner.take()
                if scanner.unsynced_disconnect is not None:
                    return await self._unreachable_workspace(scanner, frame)
                if scanner.error_at is not None and _not_reached(scanner):
                    return await self._upstream_not_found(scanner, frame)
                if (
                    scanner.disconnect_at is not None
                    and scanner.disconnect_at >= scanner.taken - len(frame)  # in this frame
                    and not self._viewer_left
                ):
                    frame, ending = await self._remote_disconnect(scanner, frame)
                    if ending is not None:
                        return ending
                if not frame.isascii() and not _valid_utf8(frame):
                    return Ending(GuacamoleStatus.UPSTREAM_ERROR, "guacd sent invalid UTF-8")
                stats.bytes_to_browser += len(frame)
                stats.frames_to_browser += 1
                await send(frame, WSMsgType.TEXT)
                if self._held is not None and scanner.syncs:
                    self._release_input()
                if scanner.error is not None:
                    return Ending(scanner.error.status)

    def _repaired(self, scanner: BoundaryScanner) -> None:
        """guacd sent the tail of an instruction as the viewer joined (its
        1.5.5 race, see `BoundaryScanner`): skipped, not fatal."""
        self.stats.join_repairs = scanner.repairs
        log.info(
            "guacd %s sent a partial instruction while the viewer joined; skipped %d bytes",
            self.guacd.endpoint,
            scanner.repaired_bytes,
        )

    async def _read_before_sync(self, reader: asyncio.StreamReader) -> bytes:
        """Read, writing ``nop`` to guacd whenever it is silent for the nudge
        interval: a guacd that failed to reach the workspace answers only then."""
        while True:
            try:
                return await asyncio.wait_for(reader.read(READ_SIZE), self._nudge_interval)
            except TimeoutError:
                self._write(NOP)  # 6 bytes; the browser pump drains

    async def _unreachable_workspace(self, scanner: BoundaryScanner, frame: bytes) -> Ending:
        """guacd said ``disconnect`` before any ``sync``: pass what came before
        it, and end with the broker's own error instead of a normal end."""
        assert scanner.unsynced_disconnect is not None
        await self._send_before(frame, scanner.unsynced_disconnect - (scanner.taken - len(frame)))
        return await self._diagnosis.not_reached("")

    async def _remote_disconnect(
        self, scanner: BoundaryScanner, frame: bytes
    ) -> tuple[bytes, Ending | None]:
        """guacd said ``disconnect`` after the first ``sync``, the viewer did not
        ask: pass what came before it; if the server cannot be reached now, end
        with that error instead (the ``disconnect`` would read as a normal
        end), else return the rest of the frame to pass on."""
        assert scanner.disconnect_at is not None
        cut = scanner.disconnect_at - (scanner.taken - len(frame))
        if cut > 0:
            await self._send_before(frame, cut)
        ending = await self._diagnosis.gone()
        return frame[max(cut, 0) :], ending

    async def _upstream_not_found(self, scanner: BoundaryScanner, frame: bytes) -> Ending:
        """guacd's UPSTREAM_NOT_FOUND (RDP's "Server refused connection" before
        the first ``sync``; SSH's "Aborted. See logs." once its login prompt
        could not connect): pass what came before it, and end with the
        broker's words naming the address, guacd's text after them (guacd
        1.5.5 cannot tell an unreachable server from a refused login here)."""
        assert scanner.error_at is not None and scanner.error is not None
        await self._send_before(frame, scanner.error_at - (scanner.taken - len(frame)))
        said = scanner.error.message
        return await self._diagnosis.not_reached("" if said in GUACD_SAYS_NOTHING else said)

    async def _send_before(self, frame: bytes, cut: int) -> None:
        before = frame[:cut]
        if before and (before.isascii() or _valid_utf8(before)):
            await self.ws.send_frame(before, WSMsgType.TEXT)

    def _guacd_closed(self, scanner: BoundaryScanner) -> Ending:
        if scanner.error is not None:
            return Ending(scanner.error.status)
        return Ending(GuacamoleStatus.RESOURCE_CLOSED, "The remote desktop closed the connection")

    # -- browser -> guacd -----------------------------------------------------

    async def _browser_to_guacd(self) -> Ending:
        receive = self.ws.receive
        transport = self.guacd.writer.transport
        stats = self.stats
        plain_sync = self._sync_passes
        unyielded = 0
        while True:
            msg = await receive()
            if msg.type is not WSMsgType.TEXT:
                if msg.type is WSMsgType.BINARY:
                    return Ending(
                        GuacamoleStatus.CLIENT_BAD_TYPE, "Binary messages are not accepted"
                    )
                return Ending(GuacamoleStatus.SUCCESS)  # the browser left
            text: str = msg.data
            if plain_sync and _is_sync_reply(text):
                # The browser's answer to each frame (~330 a MB at full speed):
                # one instruction by construction, allowed and never held.
                stats.messages_from_browser += 1
                self._write(text.encode())
            else:
                ending = await self._from_browser(text)
                if ending is not None:
                    return ending
            if transport.get_write_buffer_size() >= GUACD_BACKLOG:
                self._flush()
                await asyncio.wait_for(self.guacd.writer.drain(), WRITE_TIMEOUT)
                unyielded = 0
            elif (unyielded := unyielded + 1) >= YIELD_EVERY:
                # ``receive`` returns at once while messages are buffered: a
                # browser that sends without pause must not hold the loop.
                await asyncio.sleep(0)
                unyielded = 0

    def _write(self, data: bytes) -> None:
        """Queue ``data`` for guacd: what the browser sends in one loop pass
        (several ``sync`` answers, a burst of mouse moves) goes out in one write."""
        if not self._to_guacd:
            asyncio.get_running_loop().call_soon(self._flush)
        self._to_guacd.append(data)

    def _flush(self) -> None:
        queued = self._to_guacd
        if queued:
            self._to_guacd = []
            writer = self.guacd.writer
            if not writer.is_closing():
                writer.write(queued[0] if len(queued) == 1 else b"".join(queued))

    async def _from_browser(self, text: str) -> Ending | None:
        self.stats.messages_from_browser += 1
        if len(text) > MAX_BROWSER_MESSAGE:
            return Ending(GuacamoleStatus.CLIENT_OVERRUN, "Message too large")
        try:
            instruction = parse_instruction(text)
        except InstructionError as exc:
            return Ending(exc.status, "Malformed instruction from the browser")
        if instruction.is_internal:
            if instruction.args[:1] == ("ping",):
                await self.ws.send_str(text)
            return None
        opcode = instruction.opcode
        if opcode not in self._allowed:
            return _refused(f"The viewer may not send {opcode[:32]!r}")
        if opcode in STREAM_OPCODES:
            stream = self._stream_of(instruction)
            if stream is None:
                return _refused(f"The viewer sent {opcode!r} on a stream it did not open")
            # The answers to a ``required`` prompt (``argv`` streams) pass before
            # the first ``sync``: guacd waits for them before it draws anything.
            early = stream == "argv"
        else:
            early = opcode in _BEFORE_SYNC  # keep-alives and leaving
        if opcode in ("mouse", "key"):
            self._touch()
        elif opcode == "disconnect":
            self._viewer_left = True  # guacd's own ``disconnect`` answers it
        data = text.encode()
        if self._held is not None and not early:
            self._hold(instruction, data)
            return None
        self._write(data)
        return None

    def _stream_of(self, instruction: Instruction) -> str | None:
        """The opener (``argv``, ``clipboard``, ...) of the browser's stream that
        ``instruction`` opens, writes to or ends; tracks opens and ends. None
        when it names no stream the browser opened (or one too many)."""
        opcode, args = instruction.opcode, instruction.args
        position = STREAM_OPENERS.get(opcode)
        if position is not None:
            if len(args) <= position:
                return None
            index = args[position]
            if index not in self._streams and len(self._streams) >= MAX_CLIENT_STREAMS:
                return None
            self._streams[index] = opcode
            return opcode
        if not args:
            return None
        if opcode == "end":
            return self._streams.pop(args[0], None)
        return self._streams.get(args[0])

    def _hold(self, instruction: Instruction, data: bytes) -> None:
        """Keep input for after the first ``sync``. A move that only follows
        another move with the same buttons replaces it: the latest pointer
        position is what matters, and button changes are all kept."""
        held = self._held
        assert held is not None
        mask = instruction.args[2:3] if instruction.opcode == "mouse" else None
        if mask is not None and held and mask == self._held_mask:
            held[-1] = data
        elif len(held) < self._held_limit:
            held.append(data)
        self._held_mask = mask

    def _release_input(self) -> None:
        held, self._held = self._held, None
        self.synced = True
        if self._on_first_sync is not None:
            self._on_first_sync()
        if held:
            self._write(b"".join(held))  # after what the browser sent before

    def _touch(self) -> None:
        now = time.monotonic()
        if self._on_input is not None and now - self._last_input >= self._input_interval:
            self._last_input = now
            self._on_input()


def _is_sync_reply(text: str) -> bool:
    """Whether ``text`` is exactly ``4.sync,N.<N characters>;`` (N < 100):
    the browser's answer to a frame, whole, checked without parsing it."""
    if not text.startswith("4.sync,") or text[-1] != ";":
        return False
    dot = text.find(".", 7, 10)
    digits = text[7:dot]
    return dot > 7 and digits.isascii() and digits.isdigit() and int(digits) == len(text) - dot - 2


def _refused(message: str) -> Ending:
    return Ending(GuacamoleStatus.CLIENT_BAD_TYPE, message)


# guacd's catch-all text, which tells a user nothing (the viewer hides it too).
GUACD_SAYS_NOTHING = frozenset({"Aborted. See logs."})


def _not_reached(scanner: BoundaryScanner) -> bool:
    error = scanner.error
    return error is not None and error.status == GuacamoleStatus.UPSTREAM_NOT_FOUND


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
