"""The picture the simulated guacd draws, and how it answers input. Pure.

Everything is drawn as solid rectangles sent like guacd sends images:
``img,<stream>,14,0,image/png,<x>,<y>`` then ``blob`` instructions of at most
8064 base64 characters, then ``end``. The caller sends ``sync`` after each
batch. What appears where (coordinates in display pixels, (0, 0) top left,
rectangles given as x, y, width, height):

- the whole display: background RGB ``BACKGROUND`` = (32, 64, 128);
- a protocol marker at (0, 0, 32, 32): RGB (200, 40, 40) for rdp,
  (40, 160, 40) for vnc, (40, 40, 200) for ssh;
- a left click (button 1 pressed, mask bit 0x01 going 0 -> 1) at (x, y):
  a 40x40 square of (255, 128, 0) centred there, i.e. (x-20, y-20, 40, 40),
  clipped to the display; a right click (mask bit 0x04): the same square in
  (0, 200, 255). Moves and other buttons draw nothing;
- the n-th key press (n = 0, 1, ...; ``key,<keysym>,1``; releases draw
  nothing): a 12x20 block of (255, 255, 255) at
  (8 + 16*(n mod C), 48 + 28*((n div C) mod R)), where C = (width - 16) // 16
  and R = (height - 48) // 28 (both at least 1), like characters typed in
  rows under the marker.

A resize (``size,<w>,<h>`` from the client) redraws everything at the new
size, keeping the clicks and keys so far. The display is clamped to
``MIN_DISPLAY``..``MAX_DISPLAY`` pixels a side.
"""

from __future__ import annotations

import base64
from collections import deque
from dataclasses import dataclass

from protocols.instruction import Instruction
from protocols.simulated.png import RGB, solid_png

BACKGROUND: RGB = (32, 64, 128)
MARKER_SIZE = 32
MARKER_COLOURS: dict[str, RGB] = {"rdp": (200, 40, 40), "vnc": (40, 160, 40), "ssh": (40, 40, 200)}
CLICK_SIZE = 40
LEFT_CLICK: RGB = (255, 128, 0)
RIGHT_CLICK: RGB = (0, 200, 255)
KEY_COLOUR: RGB = (255, 255, 255)
KEY_SIZE = (12, 20)
KEY_ORIGIN = (8, 48)
KEY_PITCH = (16, 28)
MIN_DISPLAY, MAX_DISPLAY = 64, 4096
BLOB_BYTES = 6048  # what guacd puts in one blob: 8064 base64 characters
MAX_REMEMBERED = 256  # drawings kept for redraws
_STREAM = 1
_OVER = 14  # GUAC_COMP_OVER


@dataclass(frozen=True, slots=True)
class Rect:
    x: int
    y: int
    width: int
    height: int
    rgb: RGB


class Desktop:
    """State of one simulated screen. Methods return the instructions to send."""

    def __init__(self, protocol: str, width: int, height: int) -> None:
        self.protocol = protocol
        self.width, self.height = _clamp(width), _clamp(height)
        self.drawn: deque[Rect] = deque(maxlen=MAX_REMEMBERED)
        self.keys_pressed = 0
        self._buttons = 0

    def full_frame(self) -> list[Instruction]:
        """Size the display and draw everything (the first frame, a redraw)."""
        marker = MARKER_COLOURS.get(self.protocol, (128, 128, 128))
        rects = [
            Rect(0, 0, self.width, self.height, BACKGROUND),
            Rect(0, 0, min(MARKER_SIZE, self.width), min(MARKER_SIZE, self.height), marker),
            *self.drawn,
        ]
        frame = [Instruction.of("size", 0, self.width, self.height)]
        for rect in rects:
            frame += draw(rect)
        return frame

    def resize(self, width: int, height: int) -> list[Instruction]:
        self.width, self.height = _clamp(width), _clamp(height)
        return self.full_frame()

    def mouse(self, x: int, y: int, buttons: int) -> list[Instruction]:
        pressed = buttons & ~self._buttons
        self._buttons = buttons
        out: list[Instruction] = []
        for bit, colour in ((0x01, LEFT_CLICK), (0x04, RIGHT_CLICK)):
            if pressed & bit:
                out += self._remember(self._square(x, y, colour))
        return out

    def key(self, keysym: int, pressed: bool) -> list[Instruction]:
        if not pressed:
            return []
        columns = max(1, (self.width - 16) // KEY_PITCH[0])
        rows = max(1, (self.height - KEY_ORIGIN[1]) // KEY_PITCH[1])
        n = self.keys_pressed
        self.keys_pressed += 1
        x = KEY_ORIGIN[0] + KEY_PITCH[0] * (n % columns)
        y = KEY_ORIGIN[1] + KEY_PITCH[1] * ((n // columns) % rows)
        return self._remember(self._clip(Rect(x, y, *KEY_SIZE, KEY_COLOUR)))

    def _square(self, x: int, y: int, rgb: RGB) -> Rect | None:
        half = CLICK_SIZE // 2
        return self._clip(Rect(x - half, y - half, CLICK_SIZE, CLICK_SIZE, rgb))

    def _clip(self, rect: Rect) -> Rect | None:
        x0, y0 = max(0, rect.x), max(0, rect.y)
        x1 = min(self.width, rect.x + rect.width)
        y1 = min(self.height, rect.y + rect.height)
        if x1 <= x0 or y1 <= y0:
            return None
        return Rect(x0, y0, x1 - x0, y1 - y0, rect.rgb)

    def _remember(self, rect: Rect | None) -> list[Instruction]:
        if rect is None:
            return []
        self.drawn.append(rect)
        return draw(rect)


def draw(rect: Rect) -> list[Instruction]:
    """``img``, ``blob``... and ``end`` painting one solid rectangle."""
    png = solid_png(rect.width, rect.height, rect.rgb)
    out = [Instruction.of("img", _STREAM, _OVER, 0, "image/png", rect.x, rect.y)]
    for start in range(0, len(png), BLOB_BYTES):
        chunk = base64.b64encode(png[start : start + BLOB_BYTES]).decode("ascii")
        out.append(Instruction.of("blob", _STREAM, chunk))
    out.append(Instruction.of("end", _STREAM))
    return out


def _clamp(size: int) -> int:
    return min(max(size, MIN_DISPLAY), MAX_DISPLAY)
