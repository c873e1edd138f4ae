"""Display settings: what a browser can and cannot get into the handshake."""

from __future__ import annotations

import pytest

from protocols.display import MAX_DPI, MAX_MIMETYPES, MAX_SIZE, MIN_SIZE, DisplaySettings
from protocols.errors import InvalidDisplaySettings
from protocols.instruction import Instruction


def test_query_from_guacamole_common_js_is_taken_as_is() -> None:
    query = [
        ("token", "secret-viewer-token"),
        ("GUAC_WIDTH", "1280"),
        ("GUAC_HEIGHT", "720"),
        ("GUAC_DPI", "144"),
        ("GUAC_TIMEZONE", "Europe/Berlin"),
        ("GUAC_AUDIO", "audio/L8"),
        ("GUAC_AUDIO", "audio/L16"),
        ("GUAC_IMAGE", "image/jpeg"),
        ("GUAC_IMAGE", "image/png"),
        ("GUAC_IMAGE", "image/webp"),
        ("GUAC_VIDEO", 'video/webm; codecs="vp8, vorbis"'),
    ]
    settings = DisplaySettings.from_query(query)
    assert settings == DisplaySettings(
        width=1280,
        height=720,
        dpi=144,
        timezone="Europe/Berlin",
        audio=("audio/L8", "audio/L16"),
        video=('video/webm; codecs="vp8, vorbis"',),
        image=("image/jpeg", "image/png", "image/webp"),
    )


def test_other_query_names_never_reach_the_handshake() -> None:
    settings = DisplaySettings.from_query([("hostname", "10.0.0.9"), ("password", "x")])
    text = "".join(i.encode() for i in settings.handshake_instructions())
    assert "10.0.0.9" not in text and "password" not in text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("100000", MAX_SIZE),
        ("10", MIN_SIZE),
        ("abc", 1024),
        ("-5", 1024),
        ("1e4", 1024),
        ("١٠٢٤", 1024),  # Arabic-Indic digits are not a width
        (" 1280 ", 1280),
        (None, 1024),
    ],
)
def test_width_is_clamped_or_defaulted(value: str | None, expected: int) -> None:
    assert DisplaySettings.from_browser(width=value).width == expected


def test_dpi_is_clamped() -> None:
    assert DisplaySettings.from_browser(dpi="9999").dpi == MAX_DPI


@pytest.mark.parametrize(
    "mimetype",
    [
        "audio/L16\n",
        "audio/L16;3.connect",
        "text/html",
        "image/png",  # right syntax, wrong kind for audio
        "audio/" + "x" * 200,
        'audio/L16; rate="1" ; x="<script>"',
    ],
)
def test_bad_audio_mimetypes_are_dropped(mimetype: str) -> None:
    assert DisplaySettings.from_browser(audio=["audio/L8", mimetype]).audio == ("audio/L8",)


def test_guacd_style_mimetype_with_parameters_is_kept() -> None:
    kept = DisplaySettings.from_browser(audio=["audio/L16;rate=44100,channels=2"]).audio
    assert kept == ("audio/L16;rate=44100,channels=2",)


def test_mimetype_lists_are_deduplicated_and_bounded() -> None:
    many = [f"image/x-{n}" for n in range(100)]
    settings = DisplaySettings.from_browser(image=["image/png", "image/png", *many])
    assert len(settings.image) == MAX_MIMETYPES and settings.image[0] == "image/png"
    assert settings.image.count("image/png") == 1


@pytest.mark.parametrize(
    "timezone", ["Europe/Berlin", "UTC", "America/Argentina/Buenos_Aires", "Etc/GMT+5"]
)
def test_iana_timezones_are_kept(timezone: str) -> None:
    assert DisplaySettings.from_browser(timezone=timezone).timezone == timezone


@pytest.mark.parametrize(
    "timezone", ["", "../../etc/passwd", "Europe/Berlin;8.timezone", "Europe Berlin", "a" * 100]
)
def test_other_timezones_are_dropped(timezone: str) -> None:
    assert DisplaySettings.from_browser(timezone=timezone).timezone is None


@pytest.mark.parametrize(
    "kwargs",
    [{"width": 10}, {"dpi": 0}, {"timezone": "no such/zone/at/all/x"}, {"audio": ("text/x",)}],
)
def test_direct_construction_validates_strictly(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidDisplaySettings) as caught:
        DisplaySettings(**kwargs)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)


def test_handshake_instructions_in_guacd_order() -> None:
    settings = DisplaySettings(timezone="UTC", audio=("audio/L16",))
    assert settings.handshake_instructions() == [
        Instruction("size", ("1024", "768", "96")),
        Instruction("audio", ("audio/L16",)),
        Instruction("video", ()),
        Instruction("image", ()),
        Instruction("timezone", ("UTC",)),
    ]
    assert DisplaySettings().handshake_instructions()[-1].opcode == "image"
