"""Throughput of the Guacamole codec on a real guacd capture.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.codec_bench [--capture PATH] [--chunk BYTES] [--repeat N]

Prints MB/s (10^6 bytes a second, best of N runs) and ms per MB for:

- boundary finding (`BoundaryScanner.feed` + `take`: what the relay pays),
- full parsing (`Parser.feed`: instruction objects),
- pyguacamole 0.11's parsing, for comparison, when installed: framing at each
  ``;`` then `GuacamoleInstruction.load`. It is only correct on captures
  without ``;`` inside values (the VNC capture qualifies, the RDP one not).

Input is fed in ``--chunk``-byte reads, like a relay reading a socket.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from protocols.instruction import BoundaryScanner, Parser

# A copy of real guacd output kept in the repository (tests/data/README.md).
DEFAULT_CAPTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "vnc-x11vnc-20s.guac"


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def scan(chunks: list[bytes]) -> int:
    scanner = BoundaryScanner()
    for chunk in chunks:
        scanner.feed(chunk)
        scanner.take()
    return scanner.instructions


def parse(chunks: list[bytes]) -> int:
    parser = Parser()
    return sum(len(parser.feed(chunk)) for chunk in chunks)


def pyguacamole_parse(chunks: list[bytes]) -> int:
    from guacamole.instruction import GuacamoleInstruction

    count, buffer = 0, b""
    for chunk in chunks:
        buffer += chunk
        *whole, buffer = buffer.split(b";")
        for text in whole:
            GuacamoleInstruction.load(text.decode() + ";")
            count += 1
    return count


def best_rate(fn: Callable[[list[bytes]], int], chunks: list[bytes], repeat: int) -> float:
    size = sum(map(len, chunks))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(chunks)
        best = min(best, time.perf_counter() - start)
    return size / best / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capture", type=Path, default=DEFAULT_CAPTURE)
    parser.add_argument("--chunk", type=int, default=65536)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    data = args.capture.read_bytes()
    chunks = _chunks(data, args.chunk)
    expected = parse([data])
    print(
        f"{args.capture.name}: {len(data):,} bytes, {expected} instructions, {args.chunk} B reads"
    )
    measured = (("boundary finding (BoundaryScanner)", scan), ("full parsing (Parser)", parse))
    for label, fn in measured:
        rate = best_rate(fn, chunks, args.repeat)
        print(f"  {label:34} {rate:8.1f} MB/s = {1000 / rate:5.2f} ms per MB")
    try:
        counted = pyguacamole_parse(chunks)
    except ImportError:
        print("  pyguacamole                        not installed")
        return
    except Exception as exc:  # noqa: BLE001 - report why the comparison is void
        print(f"  pyguacamole                        fails on this capture: {exc!r}")
        return
    rate = best_rate(pyguacamole_parse, chunks, max(1, args.repeat // 4))
    note = "" if counted == expected else f" (wrong: {counted} instructions)"
    print(f"  pyguacamole parsing                {rate:8.1f} MB/s{note}")


if __name__ == "__main__":
    main()
