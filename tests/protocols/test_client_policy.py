"""What a viewer may send to guacd, from the connection's parameters."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from protocols.client_policy import (
    AUDIO_INPUT_OPCODES,
    BASE_OPCODES,
    CLIPBOARD_OPCODES,
    FILE_TRANSFER_OPCODES,
    STREAM_OPENERS,
    allowed_opcodes,
)
from protocols.guacd_args import RemoteProtocol
from protocols.parameters import FileTransfer, build_parameters

GUACAMOLE_JS = (
    Path(__file__).resolve().parents[2]
    / "node_modules/guacamole-common-js/dist/esm/guacamole-common.js"
)
EVERY_OPTION = CLIPBOARD_OPCODES | AUDIO_INPUT_OPCODES | FILE_TRANSFER_OPCODES


def test_the_policy_covers_exactly_what_guacamole_common_js_sends() -> None:
    """Every opcode the client library sends is either always allowed or behind
    a workspace switch, so an upgrade that adds one shows up here."""
    if not GUACAMOLE_JS.is_file():
        pytest.skip("guacamole-common-js is not installed (run `make install`)")
    sent = set(re.findall(r"""sendMessage\(\s*["'](\w+)["']""", GUACAMOLE_JS.read_text()))
    assert sent == BASE_OPCODES | EVERY_OPTION
    assert set(STREAM_OPENERS) <= sent


def test_a_plain_connection_allows_input_and_paste_only() -> None:
    parameters = build_parameters(
        RemoteProtocol.VNC, hostname="127.0.0.1", port=5900, allow_paste=True
    )
    assert allowed_opcodes(parameters) == BASE_OPCODES | CLIPBOARD_OPCODES


def test_paste_disabled_refuses_clipboard() -> None:
    parameters = build_parameters(
        RemoteProtocol.RDP, hostname="127.0.0.1", port=3389, allow_paste=False
    )
    assert allowed_opcodes(parameters) == BASE_OPCODES


@pytest.mark.parametrize(
    ("protocol", "transfer"),
    [
        (RemoteProtocol.RDP, FileTransfer(drive_path="/srv/drives/s1")),
        (RemoteProtocol.SSH, FileTransfer()),
        (RemoteProtocol.VNC, FileTransfer()),
    ],
)
def test_file_transfer_follows_the_drive_or_sftp_switch(
    protocol: RemoteProtocol, transfer: FileTransfer
) -> None:
    parameters = build_parameters(
        protocol, hostname="127.0.0.1", port=22, allow_paste=False, file_transfer=transfer
    )
    assert allowed_opcodes(parameters) == BASE_OPCODES | FILE_TRANSFER_OPCODES


def test_audio_input_only_when_guacd_takes_it() -> None:
    assert "audio" in allowed_opcodes({"enable-audio-input": "true"})
    # guacd reads a boolean as true only when it is exactly "true".
    for value in ("True", "1", "yes", ""):
        allowed = allowed_opcodes(
            {"enable-audio-input": value, "enable-drive": value, "enable-sftp": value}
        )
        assert not allowed & (AUDIO_INPUT_OPCODES | FILE_TRANSFER_OPCODES)
