"""The codec against real guacd 1.5.5 output (tests/data/*.guac)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from protocols.instruction import (
    MAX_INSTRUCTION_LENGTH,
    BoundaryScanner,
    Instruction,
    Parser,
    encode_instructions,
)
from tests.protocols.conftest import CAPTURE_FILES

# Instruction counts the capture README states.
EXPECTED_COUNTS = {
    "vnc-x11vnc-20s.guac": 1161,
    "rdp-freerdp-shadow-20s.guac": 1004,
    "ssh-sshd-10s.guac": 57,
}


def _parse_whole(data: bytes) -> list[Instruction]:
    parser = Parser()
    instructions = parser.feed(data)
    assert parser.pending == 0
    return instructions


def _chunks(data: bytes, rng: random.Random, largest: int) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        size = rng.randint(1, largest)
        out.append(data[pos : pos + size])
        pos += size
    return out


@pytest.mark.parametrize("name", CAPTURE_FILES)
def test_parse_and_reencode_gives_back_identical_bytes(captures_dir: Path, name: str) -> None:
    data = (captures_dir / name).read_bytes()
    instructions = _parse_whole(data)
    assert len(instructions) == EXPECTED_COUNTS[name]
    assert encode_instructions(instructions) == data


@pytest.mark.parametrize("name", CAPTURE_FILES)
@pytest.mark.parametrize("seed", range(4))
def test_any_chunking_gives_the_same_instructions(captures_dir: Path, name: str, seed: int) -> None:
    data = (captures_dir / name).read_bytes()
    rng = random.Random(seed)
    parser = Parser()
    got: list[Instruction] = []
    for chunk in _chunks(data, rng, largest=[7, 300, 9000, 70000][seed]):
        got += parser.feed(chunk)
    assert got == _parse_whole(data)


@pytest.mark.parametrize("name", CAPTURE_FILES)
@pytest.mark.parametrize("seed", range(4))
def test_boundary_scanner_agrees_with_the_parser(captures_dir: Path, name: str, seed: int) -> None:
    data = (captures_dir / name).read_bytes()
    instructions = _parse_whole(data)
    rng = random.Random(seed)
    scanner = BoundaryScanner()
    frames: list[bytes] = []
    for chunk in _chunks(data, rng, largest=[5, 500, 8192, 65536][seed]):
        scanner.feed(chunk)
        frame = scanner.take(max_bytes=rng.choice([None, 8192]))
        if frame:
            frames.append(frame)
    while frame := scanner.take():
        frames.append(frame)
    assert b"".join(frames) == data
    # Every frame holds whole instructions only, so each parses on its own.
    assert [i for f in frames for i in _parse_whole(f)] == instructions
    assert scanner.instructions == len(instructions)
    assert scanner.syncs == sum(i.opcode == "sync" for i in instructions)
    assert scanner.error is None


def test_scanner_notices_the_first_sync_when_it_completes(captures_dir: Path) -> None:
    data = (captures_dir / "vnc-x11vnc-20s.guac").read_bytes()
    first_sync_end = data.index(b"4.sync,") + data[data.index(b"4.sync,") :].index(b";") + 1
    scanner = BoundaryScanner()
    scanner.feed(data[: first_sync_end - 1])
    assert not scanner.sync_seen
    scanner.feed(data[first_sync_end - 1 : first_sync_end])
    assert scanner.sync_seen


def test_rdp_audio_mimetype_with_separators_survives(captures_dir: Path) -> None:
    instructions = _parse_whole((captures_dir / "rdp-freerdp-shadow-20s.guac").read_bytes())
    audio = [i for i in instructions if i.opcode == "audio"]
    assert audio == [Instruction("audio", ("1", "audio/L16;rate=44100,channels=2"))]


@pytest.mark.parametrize("name", CAPTURE_FILES)
def test_captures_fit_guacd_limits(captures_dir: Path, name: str) -> None:
    instructions = _parse_whole((captures_dir / name).read_bytes())
    assert max(len(i.encode()) for i in instructions) <= MAX_INSTRUCTION_LENGTH
