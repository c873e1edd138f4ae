"""Replay the client side of real guacd transcripts against the simulated guacd.

Each ``transcript-*_badpw.txt`` records a failed login against guacd 1.5.5:
``>>`` lines are what the client sent, ``<<`` what guacd answered. The
simulated guacd must answer the same client bytes with replies of the same
shape: the identical ``args`` list, ``ready`` with a ``$uuid``, then the same
ending (``error`` with the same status and message, or ``disconnect``).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from protocols.instruction import Instruction
from protocols.simulated.guacd import Failure, SimulatedGuacd
from protocols.stream import read_instruction

TRANSCRIPTS = (
    "transcript-rdp_nla_badpw.txt",
    "transcript-vnc_badpw.txt",
    "transcript-ssh_badpw.txt",
)
_LINE = re.compile(r"\s*[\d.]+ (>>|<<) (\[.*\])\s*$")
_UUID = re.compile(r"\$[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _load(path: Path) -> list[tuple[str, Instruction]]:
    lines = []
    for text in path.read_text().splitlines():
        match = _LINE.fullmatch(text)
        assert match, f"unexpected transcript line {text!r}"
        opcode, *args = json.loads(match[2])
        lines.append((match[1], Instruction(opcode, tuple(args))))
    return lines


async def _next_reply(reader: asyncio.StreamReader) -> Instruction | None:
    async with asyncio.timeout(5):
        return await read_instruction(reader)


@pytest.mark.parametrize("name", TRANSCRIPTS)
async def test_same_client_bytes_get_replies_of_the_same_shape(
    captures_dir: Path, start_guacd: Callable[..., Awaitable[SimulatedGuacd]], name: str
) -> None:
    transcript = _load(captures_dir / name)
    real = [i for d, i in transcript if d == "<<"]
    real_ending = real[-1]
    server = await start_guacd()
    server.inject(
        Failure.BAD_PASSWORD if real_ending.opcode == "error" else Failure.DISCONNECT_ON_WRITE
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    replies: list[Instruction] = []
    try:
        for direction, instruction in transcript:
            if direction == ">>":
                writer.write(instruction.to_bytes())
            elif instruction.opcode in ("args", "ready"):
                reply = await _next_reply(reader)
                assert reply is not None
                replies.append(reply)
        while (reply := await _next_reply(reader)) is not None:
            replies.append(reply)
    finally:
        writer.close()
        await writer.wait_closed()

    args, ready, ending = replies[0], replies[1], replies[-1]
    assert args == next(i for i in real if i.opcode == "args")
    assert ready.opcode == "ready" and _UUID.fullmatch(ready.args[0])
    assert ending.opcode == real_ending.opcode
    assert ending.args == real_ending.args  # same message and status
    assert "sync" not in [r.opcode for r in replies]  # like the real failures: no frame
    record = server.last_handshake
    assert record is not None and record.accepted  # the real client's arity passes
