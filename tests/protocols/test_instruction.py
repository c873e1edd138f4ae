"""The codec from in-memory strings: what guacd and the browser would notice."""

from __future__ import annotations

import pytest

from protocols.errors import IncompleteInstruction, InstructionError, InstructionTooLarge
from protocols.instruction import (
    MAX_ELEMENTS,
    MAX_INSTRUCTION_LENGTH,
    BoundaryScanner,
    ErrorReport,
    Instruction,
    Parser,
    encode_instructions,
    parse_instruction,
    parse_instructions,
)
from protocols.status import GuacamoleStatus


def test_encodes_like_guacd() -> None:
    assert Instruction.of("size", 0, 1024, 768).encode() == "4.size,1.0,4.1024,3.768;"
    assert Instruction("nop").encode() == "3.nop;"
    assert Instruction.of("key", 65307, True).encode() == "3.key,5.65307,4.true;"


def test_lengths_count_code_points_not_bytes() -> None:
    instruction = Instruction("name", ("José 😀",))
    assert instruction.encode() == "4.name,6.José 😀;"
    assert len(instruction.to_bytes()) == len("4.name,6.José 😀;".encode())
    assert Parser().feed(instruction.to_bytes()) == [instruction]


def test_separators_inside_values_are_data() -> None:
    text = "5.audio,1.1,31.audio/L16;rate=44100,channels=2;4.sync,3.123;"
    assert parse_instructions(text) == [
        Instruction("audio", ("1", "audio/L16;rate=44100,channels=2")),
        Instruction("sync", ("123",)),
    ]


def test_internal_ping_is_recognised() -> None:
    ping = parse_instruction("0.,4.ping,13.1700000000000;")
    assert ping.is_internal and ping.args == ("ping", "1700000000000")
    assert not parse_instruction("3.nop;").is_internal


def test_empty_elements_round_trip() -> None:
    instruction = Instruction("connect", ("VERSION_1_5_0", "", "", "x"))
    assert parse_instruction(instruction.encode()) == instruction


@pytest.mark.parametrize(
    "text",
    [
        "4.syn;",  # declared length longer than the value
        "3.sync;",  # shorter
        "x.abc;",
        ".abc;",
        "-1.a;",
        "+3.abc;",
        " 3.abc;",
        "3.abc:",
        "3.abc;4.sync;extra",
        "٣.abc;",  # a non-ASCII digit is not a length
    ],
)
def test_malformed_text_is_refused(text: str) -> None:
    with pytest.raises(InstructionError):
        parse_instructions(text)


@pytest.mark.parametrize("text", ["4.sync", "4.sync,", "4.sy", "12"])
def test_incomplete_text_is_refused(text: str) -> None:
    with pytest.raises(IncompleteInstruction):
        parse_instruction(text)


def _blob_of_length(total: int) -> tuple[Instruction, str]:
    """A blob instruction whose wire text is ``total`` code points, and that text."""
    n = total - 9 - len(str(total))  # "4.blob,N.<N chars>;"
    text = f"4.blob,{n}.{'é' * n};"
    assert len(text) == total
    return Instruction("blob", ("é" * n,)), text


def test_longest_instruction_guacd_accepts_passes_everywhere() -> None:
    instruction, text = _blob_of_length(MAX_INSTRUCTION_LENGTH)
    assert instruction.encode() == text
    assert parse_instruction(text) == instruction
    assert Parser().feed(text.encode()) == [instruction]
    assert BoundaryScanner().feed(text.encode()) == len(text.encode())


def test_one_character_more_is_refused_everywhere() -> None:
    instruction, text = _blob_of_length(MAX_INSTRUCTION_LENGTH + 1)
    with pytest.raises(InstructionTooLarge):
        instruction.encode()
    with pytest.raises(InstructionTooLarge):
        parse_instruction(text)
    with pytest.raises(InstructionTooLarge):
        Parser().feed(text.encode())


def test_element_count_limit() -> None:
    at_limit = Instruction("x", ("",) * (MAX_ELEMENTS - 1))
    assert parse_instruction(at_limit.encode()) == at_limit
    over = "1.x," + "0.," * (MAX_ELEMENTS - 1) + "0.;"
    with pytest.raises(InstructionTooLarge):
        parse_instruction(over)
    with pytest.raises(InstructionTooLarge):
        BoundaryScanner().feed(over.encode())
    with pytest.raises(InstructionTooLarge):
        Instruction("x", ("",) * MAX_ELEMENTS).encode()


def test_huge_declared_length_is_refused_before_its_content_arrives() -> None:
    scanner = BoundaryScanner()
    with pytest.raises(InstructionTooLarge):
        scanner.feed(b"4.blob,1.1,99999.")
    assert scanner.pending < 32  # nothing of the announced 99999 was awaited


def test_length_prefix_of_six_digits_is_refused() -> None:
    with pytest.raises(InstructionTooLarge):
        BoundaryScanner().feed(b"000004")
    with pytest.raises(InstructionTooLarge):
        parse_instruction("000004.sync;")


def test_failure_is_final() -> None:
    scanner = BoundaryScanner()
    with pytest.raises(InstructionError):
        scanner.feed(b"3.abc:")
    with pytest.raises(InstructionError):
        scanner.feed(b"4.sync,1.1;")


def test_character_split_across_reads_waits_for_its_last_byte() -> None:
    data = "4.name,2.é😀;3.nop;".encode()
    parser = Parser()
    got: list[Instruction] = []
    for i in range(len(data)):
        got += parser.feed(data[i : i + 1])
        if i < data.index(b";"):
            assert got == []
    assert got == [Instruction("name", ("é😀",)), Instruction("nop")]
    assert parser.pending == 0


def test_invalid_utf8_is_refused() -> None:
    with pytest.raises(InstructionError):
        Parser().feed(b"4.name,2.\xff\xfe;")


def test_scanner_reports_ready_bytes_and_keeps_the_tail() -> None:
    scanner = BoundaryScanner()
    assert scanner.feed(b"4.sync,3.123;4.bl") == len(b"4.sync,3.123;")
    assert scanner.sync_seen and scanner.pending == 4
    assert scanner.take() == b"4.sync,3.123;"
    assert scanner.feed(b"ob,1.1,4.AAAA;") == len(b"4.blob,1.1,4.AAAA;")
    assert scanner.take() == b"4.blob,1.1,4.AAAA;"
    assert scanner.at_boundary and scanner.instructions == 2


def test_scanner_take_respects_a_frame_cap_at_instruction_boundaries() -> None:
    instructions = [Instruction.of("sync", n) for n in range(100, 110)]
    data = encode_instructions(instructions)
    scanner = BoundaryScanner()
    scanner.feed(data)
    frames = []
    while chunk := scanner.take(max_bytes=30):
        frames.append(chunk)
    assert b"".join(frames) == data
    assert all(Parser().feed(frame) for frame in frames)  # each frame is whole
    assert max(len(f) for f in frames) <= 30


def test_scanner_reports_the_first_error_and_its_status() -> None:
    scanner = BoundaryScanner()
    scanner.feed(b"5.error,18.Aborted. See logs.,3.519;5.error,1.x,3.776;")
    assert scanner.error == ErrorReport("Aborted. See logs.", 519)
    assert scanner.error.status is GuacamoleStatus.UPSTREAM_NOT_FOUND
    assert not scanner.sync_seen


def test_opcodes_that_only_look_like_sync_or_error_are_not_counted() -> None:
    scanner = BoundaryScanner()
    scanner.feed(b"4.size,1.0,1.1,1.1;6.errors;1.x,4.sync;")
    assert scanner.syncs == 0 and scanner.error is None and scanner.instructions == 3


def test_scanner_notes_where_a_disconnect_before_any_sync_starts() -> None:
    scanner = BoundaryScanner()
    scanner.feed(b"3.nop;")
    assert scanner.take() == b"3.nop;" and scanner.taken == 6
    scanner.feed(b"4.size,1.0,1.1,1.1;10.disconnect;")
    assert scanner.unsynced_disconnect == 6 + len(b"4.size,1.0,1.1,1.1;")
    synced = BoundaryScanner()
    synced.feed(b"4.sync,1.1;10.disconnect;1.x,10.disconnect;")
    assert synced.unsynced_disconnect is None  # after a sync it is a normal end


def test_error_report_tolerates_a_missing_code() -> None:
    report = ErrorReport.from_instruction(Instruction("error", ("boom",)))
    assert report.status is GuacamoleStatus.SERVER_ERROR


# -- guacd 1.5.5's join race: the tail of an instruction before the first sync --

# What a relay read from real guacd 1.5.5 (SSH, OpenSSH) when the owner was
# promoted mid-instruction: the terminal's drawing, then the tail of a `rect`
# whose head went to no one, then more drawing and the first sync.
BEFORE = b"4.size,1.3,2.16,3.768;5.cfill,2.14,1.1,1.0,1.0,1.0,3.255;"
TAIL = b"304,2.40,3.456;"
AFTER = b"5.cfill,2.14,1.1,1.0,1.0,1.0,3.255;4.sync,6.781302;4.rect,1.1,1.0,1.0,1.1,1.1;"


def _scan_in_pieces(scanner: BoundaryScanner, data: bytes, cut: int) -> bytes:
    out = b""
    for piece in (data[:cut], data[cut:]):
        scanner.feed(piece)
        out += scanner.take()
    return out


@pytest.mark.parametrize("cut", range(len(BEFORE + TAIL + AFTER) + 1))
def test_a_tail_before_the_first_sync_is_skipped_when_repairing(cut: int) -> None:
    scanner = BoundaryScanner(repair_joins=True)
    out = _scan_in_pieces(scanner, BEFORE + TAIL + AFTER, cut)
    assert out == BEFORE + AFTER
    assert (scanner.repairs, scanner.repaired_bytes) == (1, len(TAIL))
    assert scanner.syncs == 1 and scanner.at_boundary


def test_a_tail_is_still_malformed_without_repair() -> None:
    with pytest.raises(InstructionError, match="length prefix"):
        BoundaryScanner().feed(BEFORE + TAIL)


def test_after_the_first_sync_a_tail_is_final() -> None:
    scanner = BoundaryScanner(repair_joins=True)
    scanner.feed(b"4.sync,1.1;")
    with pytest.raises(InstructionError):
        scanner.feed(TAIL)


def test_repairs_are_bounded() -> None:
    scanner = BoundaryScanner(repair_joins=True)
    with pytest.raises(InstructionError):
        scanner.feed(BEFORE + TAIL * 5)
    assert scanner.repairs == 4


def test_a_tail_that_never_ends_is_malformed() -> None:
    scanner = BoundaryScanner(repair_joins=True)
    scanner.feed(b"AAAA" * 1000)  # no ';' yet: the tail may still end
    with pytest.raises(InstructionError):
        scanner.feed(b"AAAA" * 2000)
