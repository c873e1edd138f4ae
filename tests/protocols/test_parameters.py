"""Connection parameters built from a workspace's configuration."""

from __future__ import annotations

import pytest

from protocols.guacd_args import RemoteProtocol
from protocols.parameters import (
    Credentials,
    FileTransfer,
    Recording,
    build_parameters,
)

RDP, VNC, SSH = RemoteProtocol.RDP, RemoteProtocol.VNC, RemoteProtocol.SSH


def test_rdp_workspace_with_every_switch() -> None:
    parameters = build_parameters(
        RDP,
        {"color-depth": "24", "disable-copy": "false"},
        hostname="127.64.0.10",
        port=3389,
        credentials=Credentials(username="alice", password="s3cret", domain="CORP"),
        security="nla",
        ignore_cert=True,
        allow_copy=False,
        allow_paste=True,
        file_transfer=FileTransfer(drive_path="/srv/drives/s1", allow_download=False),
        recording=Recording(path="/srv/rec", name="session-1", include_keys=True),
        read_only=False,
    )
    assert dict(parameters) == {
        "color-depth": "24",
        "hostname": "127.64.0.10",
        "port": "3389",
        "username": "alice",
        "password": "s3cret",
        "domain": "CORP",
        "security": "nla",
        "ignore-cert": "true",
        "disable-copy": "true",  # the typed switch wins over the mapping
        "disable-paste": "false",
        "read-only": "false",
        "enable-drive": "true",
        "drive-path": "/srv/drives/s1",
        "create-drive-path": "true",
        "disable-download": "true",
        "disable-upload": "false",
        "recording-path": "/srv/rec",
        "recording-name": "session-1",
        "create-recording-path": "true",
        "recording-include-keys": "true",
    }


def test_switches_left_unset_keep_the_mapping_values() -> None:
    parameters = build_parameters(VNC, {"disable-paste": "true"}, hostname="h", port=5900)
    assert parameters["disable-paste"] == "true" and "disable-copy" not in parameters


def test_ssh_file_transfer_is_sftp() -> None:
    parameters = build_parameters(
        SSH, hostname="h", port=22, file_transfer=FileTransfer(root_directory="/home/a")
    )
    assert parameters["enable-sftp"] == "true"
    assert parameters["sftp-root-directory"] == "/home/a"


def test_secrets_never_show_in_repr() -> None:
    credentials = Credentials(username="alice", password="hunter2", private_key="KEYDATA")
    parameters = build_parameters(SSH, hostname="h", port=22, credentials=credentials)
    assert parameters["password"] == "hunter2"
    for text in (repr(parameters), repr(credentials), str(parameters)):
        assert "hunter2" not in text and "KEYDATA" not in text
    assert "alice" in repr(parameters)


@pytest.mark.parametrize(
    ("protocol", "kwargs"),
    [
        (VNC, {"security": "nla"}),
        (SSH, {"ignore_cert": True}),
        (RDP, {"security": "kerberos-please"}),
        (RDP, {"file_transfer": FileTransfer()}),
        (VNC, {"credentials": Credentials(domain="CORP")}),
        (RDP, {"port": 0}),
        (RDP, {"hostname": ""}),
    ],
)
def test_misconfiguration_fails_when_built(
    protocol: RemoteProtocol, kwargs: dict[str, object]
) -> None:
    arguments: dict[str, object] = {"hostname": "h", "port": 3389, **kwargs}
    with pytest.raises(ValueError):
        build_parameters(protocol, **arguments)  # type: ignore[arg-type]


def test_unknown_parameter_names_are_typos_unless_not_strict() -> None:
    with pytest.raises(ValueError, match="hostnmae"):
        build_parameters(RDP, {"hostnmae": "x"}, hostname="h", port=1)
    parameters = build_parameters(RDP, {"new-in-1-6": "x"}, hostname="h", port=1, strict=False)
    assert parameters["new-in-1-6"] == "x"
