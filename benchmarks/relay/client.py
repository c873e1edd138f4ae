"""The load generator's streams: a viewer as guacamole-common-js behaves on the
wire, kept lean so that the relay, not this process, is what gets measured.

A stream reads everything it is sent, answers each ``sync`` with a ``sync``
(one WebSocket message each, as the JavaScript client does), and, when told to,
sends a ``mouse`` instruction and times the replaying guacd's echo of it
(`protocols.simulated.guacd` with ``--echo-mouse``). It speaks either the
WebSocket tunnel (broker, guacamole-lite: aiohttp's client, text messages) or
guacd's own protocol over plain TCP (the baseline: no relay at all).

No instruction is parsed in full: only ``sync`` and the echoed ``mouse`` are
looked for (``str.find``), in text cut after its last ``;`` so an instruction
split between two reads is seen whole.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from protocols.guacd_args import PROTOCOL_VERSION
from protocols.instruction import Instruction, Parser, encode_instructions

SYNC = "4.sync,"
MOUSE = "5.mouse,"
# The echo's y coordinate: the captures' own `mouse` instructions never use it.
MARK_Y = 4093
CAPPED_WAIT = 5.0  # the replaying guacd caps each wait between frames at this


@dataclass(slots=True)
class Samples:
    """What the paced streams measured while ``recording`` was on."""

    recording: bool = False
    latency: list[float] = field(default_factory=list)  # seconds, per echoed mouse
    lag: list[float] = field(default_factory=list)  # seconds behind the capture's pace
    latency_at: list[tuple[float, float]] = field(default_factory=list)  # (sent at, latency)


class Stream:
    """One viewer stream. Subclasses say how bytes go in and out."""

    def __init__(self, speed: float = 1.0) -> None:
        self.received = 0
        self.first_frame = asyncio.get_running_loop().create_future()
        self.speed = speed
        self.samples: Samples | None = None
        self._pending = ""
        self._sent: dict[int, float] = {}
        self._seq = 0
        self._base: float | None = None  # earliest arrival less the capture's offset
        self._offset = 0.0  # the capture's time of the last sync, from the first
        self._previous = 0
        self.closed = False

    # ---- transport, by subclass
    async def open(self) -> None:
        raise NotImplementedError

    async def read(self) -> str:
        """The next piece of text; "" at the end."""
        raise NotImplementedError

    async def send(self, text: str) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def ending(self) -> str:
        """How the stream ended, for a report (a WebSocket's close code)."""
        return "closed"

    # ---- behaviour
    async def pump(self, until: Callable[[Stream], bool] = lambda s: False) -> None:
        """Read and answer until the end of the stream or ``until(self)``."""
        while not self.closed:
            text = await self.read()
            if not text:
                return
            self.received += len(text)
            await self._on_text(text)
            if until(self):
                return

    async def _on_text(self, text: str) -> None:
        if self._pending:
            text = self._pending + text
        cut = text.rfind(";") + 1
        self._pending = text[cut:]
        now = time.perf_counter()
        if self._sent and MOUSE in text:
            self._echoes(text, cut, now)
        at = text.find(SYNC, 0, cut)
        while at >= 0:
            start = text.index(".", at + len(SYNC)) + 1
            end = start
            while text[end].isdigit():
                end += 1
            stamp = text[start:end]
            self._frame(int(stamp), now)
            await self.send(f"4.sync,{len(stamp)}.{stamp};")
            at = text.find(SYNC, end, cut)

    def _frame(self, stamp: int, now: float) -> None:
        """A frame's lag: how much later than the capture's pace it came, from
        the earliest frame (relative to that pace) of this stream."""
        if self._base is None:
            self._base = now
            self._previous = stamp
            if not self.first_frame.done():
                self.first_frame.set_result(now)
            return
        wait = min(max(0.0, (stamp - self._previous) / 1000 / self.speed), CAPPED_WAIT)
        self._offset += wait
        self._previous = stamp
        due = now - self._offset
        if due < self._base:
            self._base = due
        samples = self.samples
        if samples is not None and samples.recording:
            samples.lag.append(due - self._base)

    def _echoes(self, text: str, cut: int, now: float) -> None:
        at = text.find(MOUSE, 0, cut)
        while at >= 0:
            parts = text[at + len(MOUSE) : text.index(";", at)].split(",")
            at = text.find(MOUSE, at + 1, cut)
            if len(parts) < 2 or parts[1].partition(".")[2] != str(MARK_Y):
                continue
            sent = self._sent.pop(int(parts[0].partition(".")[2]), None)
            samples = self.samples
            if sent is not None and samples is not None and samples.recording:
                samples.latency.append(now - sent)
                samples.latency_at.append((sent, now - sent))

    async def mouse(self) -> None:
        """Send one ``mouse`` instruction the guacd will echo (after the first
        frame only: guacd's VNC plugin drops a connection moved earlier)."""
        if self.closed or not self.first_frame.done():
            return
        self._seq += 1
        x = str(self._seq)
        self._sent[self._seq] = time.perf_counter()
        if len(self._sent) > 1000:  # echoes lost with a closed stream: forget the oldest
            self._sent.pop(next(iter(self._sent)))
        await self.send(f"5.mouse,{len(x)}.{x},4.{MARK_Y},1.0;")


class Clients:
    """HTTP client sessions, each from its own loopback address (127.0.2.x), as
    viewers come from many addresses: a relay may limit what one address holds
    at once (the broker: ``server.max_pending_headers_per_ip`` connections still
    sending their request). `api` is the first; `next` takes them in turn."""

    def __init__(self, count: int = 64) -> None:
        self.sessions = [
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=0, force_close=True, local_addr=(f"127.0.2.{k + 1}", 0)
                ),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
            )
            for k in range(count)
        ]
        self.api = self.sessions[0]
        self._turn = 0

    def next(self) -> aiohttp.ClientSession:
        self._turn = (self._turn + 1) % len(self.sessions)
        return self.sessions[self._turn]

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.sessions))


class WebSocketStream(Stream):
    """The guacamole-common-js WebSocket tunnel (subprotocol ``guacamole``)."""

    def __init__(self, http: aiohttp.ClientSession, url: str, speed: float = 1.0) -> None:
        super().__init__(speed)
        self.http, self.url = http, url
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.last = ""

    async def open(self) -> None:
        self.ws = await self.http.ws_connect(
            self.url, protocols=("guacamole",), max_msg_size=0, autoping=False, compress=0
        )

    async def read(self) -> str:
        assert self.ws is not None
        msg = await self.ws.receive()
        if msg.type is aiohttp.WSMsgType.TEXT:
            self.last = msg.data
            return str(msg.data)
        return ""

    def ending(self) -> str:
        code = self.ws.close_code if self.ws is not None else None
        return f"close code {code}, last message {self.last[:80]!r}"

    async def send(self, text: str) -> None:
        if self.ws is not None and not self.ws.closed:
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                self.closed = True

    async def close(self) -> None:
        self.closed = True
        if self.ws is not None:
            await self.ws.close()


class TcpStream(Stream):
    """Straight to guacd: its handshake for a VNC connection, then the display."""

    def __init__(self, host: str, port: int, speed: float = 1.0) -> None:
        super().__init__(speed)
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._early = ""

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(encode_instructions([Instruction("select", ("vnc",))]))
        args = await self._until(b"4.args,")
        names = Parser().feed(args)[0].args[1:]
        given = {"hostname": "127.0.0.1", "port": "5900"}
        values = (PROTOCOL_VERSION, *(given.get(name, "") for name in names))
        self.writer.write(
            encode_instructions(
                [
                    Instruction("size", ("1024", "768", "96")),
                    Instruction("audio", ()),
                    Instruction("video", ()),
                    Instruction("image", ("image/png",)),
                    Instruction("connect", values),
                ]
            )
        )
        await self._until(b"5.ready,")

    async def _until(self, opcode: bytes) -> bytes:
        """Read up to the end of the instruction starting with ``opcode``
        (which holds no ``;``); what follows it is kept for `read`."""
        assert self.reader is not None
        buffer = self._early.encode("latin-1")
        while True:
            at = buffer.find(opcode)
            end = buffer.find(b";", at) if at >= 0 else -1
            if end >= 0:
                self._early = buffer[end + 1 :].decode("latin-1")
                return buffer[at : end + 1]
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("guacd closed during the handshake")
            buffer += data

    async def read(self) -> str:
        if self._early:
            early, self._early = self._early, ""
            return early
        assert self.reader is not None
        return (await self.reader.read(65536)).decode("latin-1")

    async def send(self, text: str) -> None:
        if self.writer is not None and not self.closed:
            self.writer.write(text.encode())

    async def close(self) -> None:
        self.closed = True
        if self.writer is not None:
            self.writer.close()
