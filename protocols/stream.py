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
    MAX_INSTRUCTION_LENGTH,
    MAX_LENGTH_DIGITS,
    Instruction,
    parse_instruction,
)

# An instruction's characters are at most 4 bytes each in UTF-8.
MAX_INSTRUCTION_BYTES = 4 * MAX_INSTRUCTION_LENGTH


async def read_instruction(reader: asyncio.StreamReader) -> Instruction | None:
    """Read exactly one instruction.

    Returns ``None`` when the stream ends before the instruction's first byte.
    Raises `IncompleteInstruction` when it ends inside one, `InstructionError`
    for malformed bytes, `InstructionTooLarge` beyond guacd's limits (the
    first length prefix is checked before the content is read). Connection
    errors propagate as `OSError`.

    It reads up to each ``;`` in turn and parses what it holds by the length
    prefixes (`protocols.instruction.parse_instruction`): one read and one
    parse per instruction, whatever its elements (guacd's ``args`` holds
    dozens). A ``;`` inside a value leaves the text incomplete, and the next
    one is read; a ``;`` is never part of a multibyte UTF-8 character, so
    what was read decodes on its own. Nothing past the instruction's own
    ``;`` is read.
    """
    length, prefix = await _read_length(reader, first=True)
    if length is None:
        return None
    if prefix + length + 1 > MAX_INSTRUCTION_LENGTH:
        raise InstructionTooLarge(f"instruction over {MAX_INSTRUCTION_LENGTH} characters")
    data = b"%d." % length
    while True:
        try:
            data += await reader.readuntil(b";")
        except asyncio.IncompleteReadError as exc:
            raise IncompleteInstruction("stream ended inside an instruction") from exc
        except asyncio.LimitOverrunError as exc:
            raise InstructionTooLarge("instruction without an end") from exc
        if len(data) > MAX_INSTRUCTION_BYTES:
            raise InstructionTooLarge(f"instruction over {MAX_INSTRUCTION_LENGTH} characters")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InstructionError("instruction is not valid UTF-8") from exc
        try:
            return parse_instruction(text)
        except IncompleteInstruction:
            continue  # that ';' was inside a value


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
