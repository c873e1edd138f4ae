"""Reading one instruction at a time from an asyncio stream, never past it.

The guacd handshake reads ``args`` and ``ready`` with `read_instruction`,
which consumes exactly the instruction's bytes: whatever guacd sent after
``ready`` stays in the `asyncio.StreamReader` for the relay to pump as raw
bytes. It costs a few reads per element, which is fine for a handshake and
wrong for a bulk stream (use `protocols.instruction.Parser` or
`BoundaryScanner` on large reads there).

Callers must bound every call with their own timeout (``asyncio.timeout``).
"""

from __future__ import annotations

import asyncio

from protocols.errors import IncompleteInstruction, InstructionError, InstructionTooLarge
from protocols.instruction import (
    MAX_ELEMENTS,
    MAX_INSTRUCTION_LENGTH,
    MAX_LENGTH_DIGITS,
    Instruction,
)

_CONTINUATION_BYTES = bytes(range(0x80, 0xC0))


async def read_instruction(reader: asyncio.StreamReader) -> Instruction | None:
    """Read exactly one instruction.

    Returns ``None`` when the stream ends before the instruction's first byte.
    Raises `IncompleteInstruction` when it ends inside one, `InstructionError`
    for malformed bytes, `InstructionTooLarge` beyond guacd's limits (checked
    before the content is read). Connection errors propagate as `OSError`.
    """
    elements: list[str] = []
    chars = 0
    while True:
        length, prefix_chars = await _read_length(reader, first=not elements)
        if length is None:
            return None
        chars += prefix_chars + length + 1
        if chars > MAX_INSTRUCTION_LENGTH or len(elements) >= MAX_ELEMENTS:
            raise InstructionTooLarge(
                f"instruction over {MAX_INSTRUCTION_LENGTH} characters or {MAX_ELEMENTS} elements"
            )
        raw = await _read_code_points(reader, length)
        terminator = await _read_exactly(reader, 1)
        try:
            elements.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InstructionError("instruction is not valid UTF-8") from exc
        if terminator == b";":
            return Instruction(elements[0], tuple(elements[1:]))
        if terminator != b",":
            raise InstructionError("element not followed by ',' or ';'")


async def _read_length(reader: asyncio.StreamReader, *, first: bool) -> tuple[int | None, int]:
    """Read ``LEN.``; return (LEN, characters read), or (None, 0) on a clean EOF."""
    try:
        prefix = await reader.readuntil(b".")
    except asyncio.IncompleteReadError as exc:
        if first and not exc.partial:
            return None, 0
        raise IncompleteInstruction("stream ended inside an instruction") from exc
    except asyncio.LimitOverrunError as exc:
        raise InstructionTooLarge("length prefix without an end") from exc
    digits = prefix[:-1]
    if not digits.isdigit():
        raise InstructionError("malformed length prefix")
    if len(digits) > MAX_LENGTH_DIGITS:
        raise InstructionTooLarge(f"length prefix over {MAX_LENGTH_DIGITS} digits")
    return int(digits), len(prefix)


async def _read_code_points(reader: asyncio.StreamReader, count: int) -> bytes:
    """Read the bytes of exactly ``count`` UTF-8 characters.

    Each character is at least one byte, so asking for as many bytes as
    characters are still missing never reads past the element.
    """
    data = bytearray()
    missing = count
    while missing:
        chunk = await _read_exactly(reader, missing)
        data += chunk
        missing -= len(chunk.translate(None, _CONTINUATION_BYTES))
    if data:
        data += await _read_exactly(reader, _missing_continuation_bytes(data))
    return bytes(data)


def _missing_continuation_bytes(data: bytearray) -> int:
    """How many bytes the last character of ``data`` still lacks."""
    lead_at = len(data) - 1
    while lead_at > 0 and 0x80 <= data[lead_at] < 0xC0:
        lead_at -= 1
    lead = data[lead_at]
    size = 4 if lead >= 0xF0 else 3 if lead >= 0xE0 else 2 if lead >= 0xC0 else 1
    return max(0, size - (len(data) - lead_at))


async def _read_exactly(reader: asyncio.StreamReader, count: int) -> bytes:
    if count == 0:
        return b""
    try:
        return await reader.readexactly(count)
    except asyncio.IncompleteReadError as exc:
        raise IncompleteInstruction("stream ended inside an instruction") from exc
