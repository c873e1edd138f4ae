"""Minimal PNG encoding for the simulated guacd (zlib + struct, no Pillow).

Only what a test desktop needs: solid-colour RGB images, and a decoder for
the images this module writes so tests can check pixels.
"""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RGB = tuple[int, int, int]


@lru_cache(maxsize=64)
def solid_png(width: int, height: int, rgb: RGB) -> bytes:
    """A ``width`` x ``height`` PNG of one colour (8-bit RGB)."""
    if width < 1 or height < 1 or not all(0 <= c <= 255 for c in rgb):
        raise ValueError("PNG needs a positive size and 8-bit colour components")
    row = b"\x00" + bytes(rgb) * width  # filter type 0, then the pixels
    compressor = zlib.compressobj(6)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB bytes) of a PNG written by `solid_png`.

    Raises ``ValueError`` for anything else (other colour types, filters).
    """
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG")
    pos, chunks = len(_SIGNATURE), dict[bytes, bytes]()
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunks[kind] = chunks.get(kind, b"") + data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    width, height, depth, colour, _, _, _ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    if (depth, colour) != (8, 2):
        raise ValueError("only 8-bit RGB is supported")
    raw = zlib.decompress(chunks[b"IDAT"])
    stride = 1 + 3 * width
    rows = [raw[i * stride : (i + 1) * stride] for i in range(height)]
    if any(row[0] != 0 for row in rows):
        raise ValueError("only filter type 0 is supported")
    return width, height, [row[1:] for row in rows]


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)
