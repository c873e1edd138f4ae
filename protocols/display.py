"""Display settings: the only values a browser may send towards guacd.

guacamole-common-js puts them in the tunnel's query string (``GUAC_WIDTH``,
``GUAC_HEIGHT``, ``GUAC_DPI``, ``GUAC_TIMEZONE``, and ``GUAC_AUDIO``,
``GUAC_VIDEO``, ``GUAC_IMAGE`` once per mimetype). `DisplaySettings.from_query`
reads those names and nothing else, and never fails: sizes are clamped,
values that are not plain numbers fall back to defaults, mimetypes and a
timezone that do not look like one are dropped. So a browser can choose its
screen size and formats, and cannot inject anything else into the handshake.

Building a `DisplaySettings` directly validates strictly instead and raises
`InvalidDisplaySettings` (a `ValueError`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from protocols.errors import InvalidDisplaySettings
from protocols.instruction import Instruction

MIN_SIZE, MAX_SIZE = 200, 8192
MIN_DPI, MAX_DPI = 48, 480
DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_DPI = 1024, 768, 96
MAX_MIMETYPES = 16  # per kind; browsers offer fewer than ten

QUERY_WIDTH, QUERY_HEIGHT, QUERY_DPI = "GUAC_WIDTH", "GUAC_HEIGHT", "GUAC_DPI"
QUERY_TIMEZONE = "GUAC_TIMEZONE"
QUERY_AUDIO, QUERY_VIDEO, QUERY_IMAGE = "GUAC_AUDIO", "GUAC_VIDEO", "GUAC_IMAGE"

_TOKEN = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}"
_PARAMETER = rf'\s*;\s*{_TOKEN}=(?:{_TOKEN}|"[A-Za-z0-9 ,._+-]{{0,64}}")'
# type/subtype with optional parameters, e.g. audio/L16;rate=44100,channels=2
# is guacd's, video/webm; codecs="vp8, vorbis" a browser's.
_MIMETYPE = {
    kind: re.compile(rf"{kind}/{_TOKEN}(?:{_PARAMETER}|,{_TOKEN}={_TOKEN}){{0,4}}")
    for kind in ("audio", "video", "image")
}
# IANA names: UTC, Europe/Berlin, America/Argentina/Buenos_Aires, Etc/GMT+5.
_TIMEZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+-]{0,30}(?:/[A-Za-z0-9][A-Za-z0-9_+-]{0,30}){0,2}")


@dataclass(frozen=True, slots=True)
class DisplaySettings:
    """Screen size, DPI, timezone and accepted media types of one viewer."""

    width: int = DEFAULT_WIDTH
    height: int = DEFAULT_HEIGHT
    dpi: int = DEFAULT_DPI
    timezone: str | None = None
    audio: tuple[str, ...] = ()
    video: tuple[str, ...] = ()
    image: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, value, low, high in (
            ("width", self.width, MIN_SIZE, MAX_SIZE),
            ("height", self.height, MIN_SIZE, MAX_SIZE),
            ("dpi", self.dpi, MIN_DPI, MAX_DPI),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidDisplaySettings(f"{name} must be an integer in [{low}, {high}]")
        if self.timezone is not None and not is_timezone(self.timezone):
            raise InvalidDisplaySettings("timezone is not an IANA timezone name")
        for kind, types in (("audio", self.audio), ("video", self.video), ("image", self.image)):
            if len(types) > MAX_MIMETYPES or not all(is_mimetype(kind, t) for t in types):
                raise InvalidDisplaySettings(f"{kind} must be at most {MAX_MIMETYPES} {kind}/*")

    @classmethod
    def from_browser(
        cls,
        *,
        width: str | int | None = None,
        height: str | int | None = None,
        dpi: str | int | None = None,
        timezone: str | None = None,
        audio: Iterable[str] = (),
        video: Iterable[str] = (),
        image: Iterable[str] = (),
    ) -> DisplaySettings:
        """Settings from untrusted values: clamped, defaulted, filtered; never raises."""
        return cls(
            width=_clamp(width, DEFAULT_WIDTH, MIN_SIZE, MAX_SIZE),
            height=_clamp(height, DEFAULT_HEIGHT, MIN_SIZE, MAX_SIZE),
            dpi=_clamp(dpi, DEFAULT_DPI, MIN_DPI, MAX_DPI),
            timezone=timezone if timezone is not None and is_timezone(timezone) else None,
            audio=_mimetypes("audio", audio),
            video=_mimetypes("video", video),
            image=_mimetypes("image", image),
        )

    @classmethod
    def from_query(cls, pairs: Iterable[tuple[str, str]]) -> DisplaySettings:
        """Settings from query-string pairs (e.g. ``request.query.items()``).

        Only the ``GUAC_*`` names above are read; the first of a repeated
        single-valued name wins. Never raises.
        """
        single: dict[str, str] = {}
        lists: dict[str, list[str]] = {QUERY_AUDIO: [], QUERY_VIDEO: [], QUERY_IMAGE: []}
        for key, value in pairs:
            if key in lists:
                lists[key].append(value)
            else:
                single.setdefault(key, value)
        return cls.from_browser(
            width=single.get(QUERY_WIDTH),
            height=single.get(QUERY_HEIGHT),
            dpi=single.get(QUERY_DPI),
            timezone=single.get(QUERY_TIMEZONE),
            audio=lists[QUERY_AUDIO],
            video=lists[QUERY_VIDEO],
            image=lists[QUERY_IMAGE],
        )

    def handshake_instructions(self, *, with_timezone: bool = True) -> list[Instruction]:
        """``size``, ``audio``, ``video``, ``image`` and, if set, ``timezone``."""
        instructions = [
            Instruction.of("size", self.width, self.height, self.dpi),
            Instruction("audio", self.audio),
            Instruction("video", self.video),
            Instruction("image", self.image),
        ]
        if with_timezone and self.timezone is not None:
            instructions.append(Instruction("timezone", (self.timezone,)))
        return instructions


def is_mimetype(kind: str, value: str) -> bool:
    """Whether ``value`` is a plausible ``kind/subtype[;param=value...]``."""
    pattern = _MIMETYPE.get(kind)
    return pattern is not None and len(value) <= 128 and pattern.fullmatch(value) is not None


def is_timezone(value: str) -> bool:
    """Whether ``value`` has the shape of an IANA timezone name."""
    return _TIMEZONE.fullmatch(value) is not None


def _clamp(value: str | int | None, default: int, low: int, high: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, str):
        value = value.strip()
        if not (value.isascii() and value.isdigit() and len(value) <= 6):
            return default
        value = int(value)
    if value is None:
        return default
    return min(max(value, low), high)


def _mimetypes(kind: str, values: Iterable[str]) -> tuple[str, ...]:
    accepted: list[str] = []
    for value in values:
        if len(accepted) == MAX_MIMETYPES:
            break
        if value not in accepted and is_mimetype(kind, value):
            accepted.append(value)
    return tuple(accepted)
