"""Hypothesis properties of the codec: arbitrary Unicode, arbitrary chunking."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from protocols.errors import InstructionError, InstructionTooLarge
from protocols.instruction import (
    MAX_ELEMENTS,
    MAX_INSTRUCTION_LENGTH,
    BoundaryScanner,
    Instruction,
    Parser,
    encode_instructions,
    parse_instruction,
)

# Every code point but surrogates (which UTF-8 cannot carry), non-BMP included.
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
non_bmp_text = st.text(st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF), max_size=10)
values = st.one_of(any_text, non_bmp_text, st.sampled_from(["", ";", ",", ".", "3.a;", "0.,"]))


@st.composite
def instructions(draw: st.DrawFn) -> Instruction:
    opcode = draw(st.one_of(st.sampled_from(["sync", "error", "blob", "", "img"]), any_text))
    args = tuple(draw(st.lists(values, max_size=12)))
    return Instruction(opcode, args)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


@given(instructions())
def test_encode_then_parse_is_identity(instruction: Instruction) -> None:
    assert parse_instruction(instruction.encode()) == instruction


@settings(max_examples=200)
@given(st.lists(instructions(), min_size=1, max_size=8), st.lists(st.integers(0, 10**6)))
def test_any_chunk_split_parses_the_same(batch: list[Instruction], cuts: list[int]) -> None:
    data = encode_instructions(batch)
    parser, scanner = Parser(), BoundaryScanner()
    got: list[Instruction] = []
    taken = b""
    for chunk in _split(data, cuts):
        got += parser.feed(chunk)
        scanner.feed(chunk)
        taken += scanner.take()
    assert got == batch
    assert taken == data and scanner.at_boundary
    assert scanner.syncs == sum(i.opcode == "sync" for i in batch)


@given(st.lists(instructions(), min_size=1, max_size=4), st.integers(1, 10**6))
def test_scanner_never_releases_part_of_an_instruction(batch: list[Instruction], cut: int) -> None:
    data = encode_instructions(batch)
    cut %= len(data)
    scanner = BoundaryScanner()
    ready = scanner.feed(data[:cut])
    ends = []
    offset = 0
    for instruction in batch:
        offset += len(instruction.to_bytes())
        ends.append(offset)
    assert ready == max([0, *[e for e in ends if e <= cut]])


@given(st.integers(MAX_ELEMENTS + 1, MAX_ELEMENTS + 50))
def test_too_many_elements_raise_the_protocol_error(count: int) -> None:
    text = "1.x," * (count - 1) + "1.x;"
    with pytest.raises(InstructionTooLarge):
        parse_instruction(text)
    with pytest.raises(InstructionTooLarge):
        BoundaryScanner().feed(text.encode())


@given(st.integers(MAX_INSTRUCTION_LENGTH + 1, 99999), st.integers(1, 4000))
def test_over_long_input_raises_without_waiting_for_it(declared: int, sent: int) -> None:
    # The announced length alone is enough to refuse: memory stays bounded.
    data = f"4.blob,1.1,{declared}.".encode() + b"A" * sent
    parser = Parser()
    with pytest.raises(InstructionTooLarge):
        parser.feed(data)


@settings(max_examples=300)
@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=6))
def test_arbitrary_bytes_only_ever_raise_the_protocol_error(data: bytes, cuts: list[int]) -> None:
    parser = Parser()
    try:
        for chunk in _split(data, cuts):
            parser.feed(chunk)
    except InstructionError:
        return
    assert parser.pending <= len(data)


@given(st.lists(instructions(), min_size=1, max_size=4))
def test_truncated_stream_is_visible_as_pending_bytes(batch: list[Instruction]) -> None:
    data = encode_instructions(batch)
    assume(len(data) > 1)
    parser = Parser()
    parser.feed(data[:-1])
    assert parser.pending > 0


# What guacd sends: ASCII, short elements and long base64 blobs, the opcodes the
# relay watches for among them; read in any chunking.
guacd_values = st.one_of(
    st.sampled_from(["0", "-1", "image/png", "", "1700000000000", "a;b,c", "Aborted."]),
    st.integers(0, 2000).map(lambda n: "A" * n),  # 4 of them fit in one instruction
    st.text(st.characters(max_codepoint=0x7F, exclude_characters="\x00"), max_size=120),
)
guacd_instructions = st.builds(
    lambda opcode, args: Instruction(opcode, tuple(args)),
    st.sampled_from(["sync", "error", "disconnect", "blob", "img", "end", "size", "s", "errors"]),
    st.lists(guacd_values, max_size=4),
)


@settings(max_examples=300)
@given(st.lists(guacd_instructions, min_size=1, max_size=12), st.lists(st.integers(0, 10**6)))
def test_the_scanner_notes_what_the_relay_watches_for_in_any_chunking(
    batch: list[Instruction], cuts: list[int]
) -> None:
    data = encode_instructions(batch)
    starts, offset = [], 0
    for instruction in batch:
        starts.append(offset)
        offset += len(instruction.to_bytes())
    scanner = BoundaryScanner()
    taken = b""
    for chunk in _split(data, cuts):
        scanner.feed(chunk)
        taken += scanner.take()
    assert taken == data and scanner.instructions == len(batch)
    opcodes = [b.opcode for b in batch]
    assert scanner.syncs == opcodes.count("sync")
    first_error = opcodes.index("error") if "error" in opcodes else None
    first_disconnect = opcodes.index("disconnect") if "disconnect" in opcodes else None
    assert scanner.error_at == (None if first_error is None else starts[first_error])
    assert scanner.disconnect_at == (None if first_disconnect is None else starts[first_disconnect])
    if first_disconnect is not None and "sync" not in opcodes[:first_disconnect]:
        assert scanner.unsynced_disconnect == starts[first_disconnect]
    else:
        assert scanner.unsynced_disconnect is None
