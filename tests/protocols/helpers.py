"""Test helpers: read a guacd stream like a browser would and look at pixels."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from dataclasses import dataclass, field

from protocols.display import DisplaySettings
from protocols.guacd import ConnectionRequest, GuacdTimeouts
from protocols.guacd_args import RemoteProtocol
from protocols.instruction import Instruction, Parser
from protocols.parameters import Credentials, build_parameters
from protocols.simulated.png import RGB, decode_png

PASSWORD = "s3cret-pw-never-shown"
FAST = GuacdTimeouts(connect=2.0, write=2.0, reply=2.0)


def request_for(
    protocol: RemoteProtocol = RemoteProtocol.VNC,
    *,
    username: str = "alice",
    join: str | None = None,
    read_only: bool | None = None,
) -> ConnectionRequest:
    """A request like the broker's: credentials, a viewer's display, a user name."""
    parameters = build_parameters(
        protocol,
        hostname="127.64.0.10",
        port=5900,
        credentials=Credentials(username=username, password=PASSWORD),
        read_only=read_only,
    )
    display = DisplaySettings(
        width=800, height=600, timezone="Europe/Berlin", audio=("audio/L16",), image=("image/png",)
    )
    return ConnectionRequest(protocol, parameters, display, user_name="Alice", join=join)


@dataclass
class StreamView:
    """Everything read from guacd so far, parsed."""

    reader: asyncio.StreamReader
    instructions: list[Instruction] = field(default_factory=list)
    eof: bool = False
    _parser: Parser = field(default_factory=Parser)

    async def until(
        self, done: Callable[[list[Instruction]], bool], limit: float = 5.0
    ) -> list[Instruction]:
        """Read until ``done(instructions)`` or EOF; raise TimeoutError after ``limit`` seconds."""
        async with asyncio.timeout(limit):
            while not done(self.instructions) and not self.eof:
                data = await self.reader.read(65536)
                if not data:
                    self.eof = True
                self.instructions += self._parser.feed(data)
        return self.instructions

    async def until_opcode(self, opcode: str, count: int = 1, limit: float = 5.0) -> None:
        await self.until(lambda seen: sum(i.opcode == opcode for i in seen) >= count, limit)

    async def until_eof(self, limit: float = 5.0) -> list[Instruction]:
        return await self.until(lambda _: False, limit)

    def opcodes(self) -> list[str]:
        return [i.opcode for i in self.instructions]


class Canvas:
    """The default layer as a browser would paint it (solid-colour images only)."""

    def __init__(self) -> None:
        self.width = self.height = 0
        self.rects: list[tuple[int, int, int, int, RGB]] = []

    def apply(self, instructions: list[Instruction]) -> Canvas:
        streams: dict[str, tuple[int, int, list[str]]] = {}
        for i in instructions:
            if i.opcode == "size" and i.args[0] == "0":
                self.width, self.height = int(i.args[1]), int(i.args[2])
            elif i.opcode == "img" and i.args[2] == "0":
                streams[i.args[0]] = (int(i.args[4]), int(i.args[5]), [])
            elif i.opcode == "blob" and i.args[0] in streams:
                streams[i.args[0]][2].append(i.args[1])
            elif i.opcode == "end" and i.args[0] in streams:
                x, y, parts = streams.pop(i.args[0])
                self._paint(x, y, base64.b64decode("".join(parts)))
        return self

    def _paint(self, x: int, y: int, png: bytes) -> None:
        width, height, rows = decode_png(png)
        first = rows[0][:3]
        assert all(row == first * width for row in rows), "simulated images are solid"
        self.rects.append((x, y, width, height, (first[0], first[1], first[2])))

    def pixel(self, x: int, y: int) -> RGB | None:
        for rx, ry, w, h, rgb in reversed(self.rects):
            if rx <= x < rx + w and ry <= y < ry + h:
                return rgb
        return None
