"""Reading single instructions from a stream without consuming what follows."""

from __future__ import annotations

import asyncio

import pytest

from protocols.errors import IncompleteInstruction, InstructionTooLarge
from protocols.instruction import Instruction
from protocols.stream import read_instruction


def _reader(data: bytes, *, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


async def test_reads_one_instruction_and_leaves_the_rest() -> None:
    reader = _reader(b"5.ready,37.$62e7a5f4-2416-457b-bfd1-b9405e2a4ee0;4.sync,3.123;")
    ready = await read_instruction(reader)
    assert ready == Instruction("ready", ("$62e7a5f4-2416-457b-bfd1-b9405e2a4ee0",))
    assert await reader.read() == b"4.sync,3.123;"


async def test_multibyte_characters_arriving_in_pieces() -> None:
    data = "4.name,3.é😀x;4.rest;".encode()
    reader = asyncio.StreamReader()
    task = asyncio.create_task(read_instruction(reader))
    for i in range(len(data)):
        reader.feed_data(data[i : i + 1])
        await asyncio.sleep(0)  # let the reader consume: a yield, not a delay
    reader.feed_eof()
    assert await task == Instruction("name", ("é😀x",))
    assert await reader.read() == b"4.rest;"


async def test_eof_between_instructions_is_none() -> None:
    assert await read_instruction(_reader(b"")) is None


async def test_eof_inside_an_instruction_is_incomplete() -> None:
    with pytest.raises(IncompleteInstruction):
        await read_instruction(_reader(b"4.args,13.VERSION_1"))


async def test_limits_hold_before_content_is_read() -> None:
    with pytest.raises(InstructionTooLarge):
        await read_instruction(_reader(b"99999.", eof=False))
    with pytest.raises(InstructionTooLarge):
        await read_instruction(_reader(b"123456.", eof=False))


async def test_semicolons_inside_values_do_not_end_the_instruction() -> None:
    # guacd's texts and mimetypes may hold ';' and ','.
    reader = _reader(b"5.error,10.a;b,c;d;e;,3.519;5.audio,31.audio/L16;rate=44100,channels=2;")
    assert await read_instruction(reader) == Instruction("error", ("a;b,c;d;e;", "519"))
    audio = await read_instruction(reader)
    assert audio == Instruction("audio", ("audio/L16;rate=44100,channels=2",))
    assert await read_instruction(reader) is None
