"""A viewer that speaks like guacamole-common-js over the broker's WebSocket
tunnel: it answers each ``sync``, sends ``argv`` streams when guacd asks for
parameters (``required``), types keys, moves the mouse and sends or receives
the clipboard. Everything guacd sent is kept, in order, for the assertions."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Callable

import aiohttp

from protocols.instruction import Instruction, Parser
from tests.broker.apiclient import Api
from tests.broker.viewer_support import open_tunnel

# X keysyms for what the tests type.
RETURN = 0xFF0D
FIRST_FRAME_LIMIT = 20.0


def keysym(char: str) -> int:
    """The X keysym of a printable Latin-1 character."""
    code = ord(char)
    if not 0x20 <= code <= 0xFF:
        raise ValueError(f"no keysym table for {char!r}")
    return code


class Viewer:
    """One viewer connection; use `open_viewer`, and `close` it."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.received: list[Instruction] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed = asyncio.Event()
        self._changed = asyncio.Condition()
        self._next_stream = 0
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        parser = Parser()
        try:
            while True:
                msg = await self.ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    if msg.type == aiohttp.WSMsgType.CLOSE:  # the reason: a Guacamole status
                        self.close_reason = str(msg.extra or "")
                    break
                batch = parser.feed(msg.data.encode())
                for ins in batch:
                    if ins.opcode == "sync":  # as Guacamole.Client does, once drawn
                        await self.send("sync", ins.args[0])
                async with self._changed:
                    self.received.extend(batch)
                    self._changed.notify_all()
        except (aiohttp.ClientError, ConnectionResetError):
            pass
        finally:
            self.close_code = self.ws.close_code
            self.closed.set()
            async with self._changed:
                self._changed.notify_all()

    async def send(self, opcode: str, *args: str | int) -> None:
        if not self.ws.closed:
            await self.ws.send_str(Instruction.of(opcode, *args).encode())

    async def wait_for(
        self, predicate: Callable[[Instruction], bool], limit: float = FIRST_FRAME_LIMIT
    ) -> Instruction:
        """The first instruction received (so far or later) that satisfies
        ``predicate``; fails when the tunnel closes or ``limit`` passes."""

        def found() -> Instruction | None:
            return next((i for i in self.received if predicate(i)), None)

        async def run() -> Instruction:
            async with self._changed:
                while (hit := found()) is None:
                    if self.closed.is_set():
                        raise AssertionError(
                            f"tunnel closed ({self.close_code}) first; last: {self.tail()}"
                        )
                    await self._changed.wait()
                return hit

        try:
            return await asyncio.wait_for(run(), limit)
        except TimeoutError:
            raise AssertionError(f"not within {limit} s; last: {self.tail()}") from None

    async def opcode(self, name: str, limit: float = FIRST_FRAME_LIMIT) -> Instruction:
        return await self.wait_for(lambda i: i.opcode == name, limit)

    async def first_frame(self, limit: float = FIRST_FRAME_LIMIT) -> None:
        """Until an image has been drawn and a frame ended (``img`` then ``sync``)."""
        await self.opcode("img", limit)
        await self.opcode("sync", limit)

    def opcodes(self) -> list[str]:
        return [i.opcode for i in self.received]

    def tail(self, n: int = 5) -> list[str]:
        return [f"{i.opcode}{list(i.args)[:3]}"[:120] for i in self.received[-n:]]

    async def type_text(self, text: str) -> None:
        for char in text:
            await self.key(keysym(char))

    async def key(self, sym: int) -> None:
        await self.send("key", sym, 1)
        await self.send("key", sym, 0)

    async def mouse(self, x: int, y: int, buttons: int = 0) -> None:
        await self.send("mouse", x, y, buttons)

    def _stream(self) -> int:
        self._next_stream += 1
        return self._next_stream

    async def send_text_stream(self, opener: str, *args: str, text: str) -> None:
        """A text stream of the client's: ``opener`` (``clipboard``, ``argv``),
        one ``blob``, ``end``."""
        index = self._stream()
        await self.send(opener, index, *args)
        await self.send("blob", index, base64.b64encode(text.encode()).decode())
        await self.send("end", index)

    async def answer_required(self, values: dict[str, str]) -> list[str]:
        """Wait for ``required`` and answer each parameter it names from
        ``values`` with an ``argv`` stream, as the credential prompt does."""
        required = await self.opcode("required")
        for name in required.args:
            await self.send_text_stream("argv", "text/plain", name, text=values[name])
        return list(required.args)

    def received_streams(self, opener: str) -> list[str]:
        """The text of each complete stream guacd opened with ``opener``."""
        texts: list[str] = []
        open_streams: dict[str, list[bytes]] = {}
        for ins in self.received:
            if ins.opcode == opener:
                open_streams[ins.args[0]] = []
            elif ins.opcode == "blob" and ins.args[0] in open_streams:
                open_streams[ins.args[0]].append(base64.b64decode(ins.args[1]))
            elif ins.opcode == "end" and ins.args[0] in open_streams:
                texts.append(b"".join(open_streams.pop(ins.args[0])).decode(errors="replace"))
        return texts

    async def close(self) -> None:
        """Leave as the browser does (``disconnect``, then close the socket)."""
        with contextlib.suppress(Exception):
            await self.send("disconnect")
        await self.ws.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._reader, 10)


async def open_viewer(api: Api, session_id: str, credential: str) -> Viewer:
    ws = await open_tunnel(api, session_id, credential)
    return Viewer(ws)
