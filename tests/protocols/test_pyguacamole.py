"""pyguacamole: why it is not our codec, and an independent client of the simulator.

pyguacamole 0.11 frames at the first ``;`` and negotiates no protocol version.
The first breaks on the RDP capture's ``audio`` instruction, whose mimetype
holds ``;`` and ``,``; the second is fine with guacd 1.5.5, which takes an
empty version as "1.0.0", and so must the simulated guacd.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from guacamole.client import GuacamoleClient
from guacamole.exceptions import InvalidInstruction
from guacamole.instruction import GuacamoleInstruction

from protocols.instruction import Instruction, Parser
from protocols.simulated.desktop import BACKGROUND
from protocols.simulated.guacd import SimulatedGuacd
from protocols.simulated.png import decode_png


class _CaptureSocket:
    """Stands in for pyguacamole's socket, serving a capture in 4 KiB reads."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def recv(self, size: int) -> bytes:
        chunk = self._data[self._pos : self._pos + size]
        self._pos += len(chunk)
        return chunk


def test_pyguacamole_breaks_on_the_rdp_audio_instruction(captures_dir: Path) -> None:
    data = (captures_dir / "rdp-freerdp-shadow-20s.guac").read_bytes()
    ours = Parser().feed(data)
    client = GuacamoleClient("127.0.0.1", 4822)
    client._client = _CaptureSocket(data)

    parsed: list[GuacamoleInstruction] = []
    with pytest.raises(InvalidInstruction):
        while True:
            parsed.append(client.read_instruction())

    # Everything before the audio instruction matched our parse; it broke there.
    broken_at = len(parsed)
    assert [(i.opcode, tuple(i.args)) for i in parsed] == [
        (i.opcode, i.args) for i in ours[:broken_at]
    ]
    assert ours[broken_at] == Instruction("audio", ("1", "audio/L16;rate=44100,channels=2"))


def _pyguacamole_session(port: int) -> tuple[list[tuple[str, tuple[str, ...]]], str | None]:
    """A blocking pyguacamole client: handshake, then read until the first sync."""
    client = GuacamoleClient("127.0.0.1", port, timeout=5)
    client.handshake(
        protocol="vnc", hostname="127.64.0.10", port="5900", password="pw", width=640, height=480
    )
    received: list[tuple[str, tuple[str, ...]]] = []
    while not received or received[-1][0] != "sync":
        instruction = client.read_instruction()
        received.append((instruction.opcode, tuple(instruction.args)))
    client.close()
    return received, client.id


async def test_pyguacamole_is_a_working_client_of_the_simulated_guacd(
    start_guacd: Callable[..., Awaitable[SimulatedGuacd]],
) -> None:
    server = await start_guacd()
    received, connection_id = await asyncio.to_thread(_pyguacamole_session, server.port)

    record = server.last_handshake
    assert record is not None and record.accepted
    assert record.version == ""  # pyguacamole negotiates no version
    assert record.parameters["password"] == "pw" and record.size == ("640", "480", "96")
    assert connection_id == record.connection_id

    opcodes = [opcode for opcode, _ in received]
    assert opcodes[:3] == ["size", "img", "blob"] and opcodes[-1] == "sync"
    assert received[0] == ("size", ("0", "640", "480"))
    blobs = []
    for opcode, args in received[2:]:
        if opcode != "blob":
            break
        blobs.append(args[1])
    width, height, rows = decode_png(base64.b64decode("".join(blobs)))
    assert (width, height) == (640, 480)
    assert rows[0][:3] == bytes(BACKGROUND)
