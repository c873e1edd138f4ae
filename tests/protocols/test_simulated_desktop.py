"""The simulated desktop's pixel facts, as documented in its module."""

from __future__ import annotations

from protocols.simulated.desktop import (
    BACKGROUND,
    LEFT_CLICK,
    MARKER_COLOURS,
    RIGHT_CLICK,
    Desktop,
)
from tests.protocols.helpers import Canvas

WHITE = (255, 255, 255)


def test_first_frame_is_background_and_protocol_marker() -> None:
    canvas = Canvas().apply(Desktop("rdp", 640, 480).full_frame())
    assert (canvas.width, canvas.height) == (640, 480)
    assert canvas.pixel(0, 0) == canvas.pixel(31, 31) == MARKER_COLOURS["rdp"]
    assert canvas.pixel(32, 32) == canvas.pixel(639, 479) == BACKGROUND


def test_left_click_paints_a_40px_orange_square_centred_on_it() -> None:
    desktop = Desktop("vnc", 640, 480)
    canvas = Canvas().apply(desktop.full_frame())
    canvas.apply(desktop.mouse(200, 150, 0))  # a move draws nothing
    assert canvas.pixel(200, 150) == BACKGROUND
    canvas.apply(desktop.mouse(200, 150, 1))
    assert canvas.pixel(180, 130) == canvas.pixel(219, 169) == LEFT_CLICK
    assert canvas.pixel(179, 150) == canvas.pixel(220, 150) == BACKGROUND
    canvas.apply(desktop.mouse(300, 150, 1))  # still held: a drag, not a click
    assert canvas.pixel(300, 150) == BACKGROUND


def test_right_click_colour_and_clipping_at_the_edge() -> None:
    desktop = Desktop("vnc", 640, 480)
    canvas = Canvas().apply(desktop.full_frame())
    canvas.apply(desktop.mouse(635, 475, 4))
    assert canvas.pixel(639, 479) == canvas.pixel(615, 455) == RIGHT_CLICK


def test_key_presses_type_white_blocks_in_rows() -> None:
    desktop = Desktop("ssh", 640, 480)
    canvas = Canvas().apply(desktop.full_frame())
    canvas.apply(desktop.key(ord("a"), True) + desktop.key(ord("a"), False))
    canvas.apply(desktop.key(ord("b"), True))
    assert canvas.pixel(8, 48) == canvas.pixel(19, 67) == WHITE
    assert canvas.pixel(24, 48) == WHITE  # second press: 16 px to the right
    assert canvas.pixel(20, 48) == BACKGROUND and canvas.pixel(40, 48) == BACKGROUND


def test_resize_redraws_what_was_there() -> None:
    desktop = Desktop("vnc", 640, 480)
    desktop.mouse(100, 100, 1)
    canvas = Canvas().apply(desktop.resize(800, 600))
    assert (canvas.width, canvas.height) == (800, 600)
    assert canvas.pixel(100, 100) == LEFT_CLICK and canvas.pixel(799, 599) == BACKGROUND
