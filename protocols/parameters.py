"""guacd connection parameters, built from a workspace's configuration.

`build_parameters` is pure: the broker passes a plain mapping of guacd
parameter names to values (from its configuration) plus typed convenience
arguments that take precedence over it: the address from the network grant,
credentials read from the environment or files, and the policy switches
(security, clipboard, file transfer, recording, read-only). A switch left at
``None`` leaves the mapping's value alone.

The result is a `Parameters` mapping whose ``repr`` hides secrets, so that a
stray log line or traceback cannot leak a password. Nothing in this package
logs parameter values; only names.

Misconfiguration (a switch that does not apply to the protocol, an unknown
security mode, a bad port) raises ``ValueError`` when the parameters are
built, not when a user connects.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from protocols.guacd_args import GUACD_1_5_5_ARGS, RemoteProtocol

SECRET_PARAMETERS = frozenset(
    {
        "password",
        "passphrase",
        "private-key",
        "sftp-password",
        "sftp-passphrase",
        "sftp-private-key",
        "gateway-password",
        "preconnection-blob",
    }
)
RDP_SECURITY_MODES = frozenset({"any", "nla", "nla-ext", "tls", "vmconnect", "rdp"})
_NAME = re.compile(r"[a-z][a-z0-9-]{0,63}")


class Parameters(Mapping[str, str]):
    """guacd parameter names to values; ``repr`` shows secrets as ``***``."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str]) -> None:
        for name, value in values.items():
            if not _NAME.fullmatch(name) or not isinstance(value, str):
                raise ValueError(f"bad guacd parameter {name!r}: names are kebab-case, values text")
        self._values = dict(values)

    def __getitem__(self, name: str) -> str:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def redacted(self) -> dict[str, str]:
        """A copy safe to log: secret values replaced by ``***``."""
        return {k: "***" if k in SECRET_PARAMETERS else v for k, v in self._values.items()}

    def __repr__(self) -> str:
        return f"Parameters({self.redacted()!r})"


@dataclass(frozen=True, slots=True)
class Credentials:
    """Login for the remote desktop. Secret fields never appear in ``repr``."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    domain: str | None = None
    private_key: str | None = field(default=None, repr=False)
    passphrase: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Recording:
    """Session recording: guacd writes its output stream to ``path/name``."""

    path: str
    name: str
    create_path: bool = True
    include_keys: bool = False
    exclude_output: bool = False
    exclude_mouse: bool = False


@dataclass(frozen=True, slots=True)
class FileTransfer:
    """File transfer: a virtual drive for RDP, SFTP for SSH and VNC.

    RDP needs ``drive_path`` (a directory on the guacd host). VNC's SFTP
    connects to ``sftp-hostname`` (defaults to the VNC host) with its own
    credentials, which belong in the base mapping.
    """

    drive_path: str | None = None
    root_directory: str = "/"
    allow_download: bool = True
    allow_upload: bool = True


def build_parameters(
    protocol: RemoteProtocol,
    base: Mapping[str, str] | None = None,
    *,
    hostname: str,
    port: int,
    credentials: Credentials | None = None,
    security: str | None = None,
    ignore_cert: bool | None = None,
    allow_copy: bool | None = None,
    allow_paste: bool | None = None,
    file_transfer: FileTransfer | None = None,
    recording: Recording | None = None,
    read_only: bool | None = None,
    strict: bool = True,
) -> Parameters:
    """The parameters for one connection; see the module docstring.

    Raises ``ValueError`` for settings that cannot apply to ``protocol`` and,
    with ``strict``, for names guacd 1.5.5 does not know (typos); pass
    ``strict=False`` for parameters of newer guacd versions.
    """
    if not hostname or not 0 < port < 65536:
        raise ValueError("hostname must be set and port in 1..65535")
    values = dict(base or {})
    values.update(hostname=hostname, port=str(port))
    values.update(_credentials(protocol, credentials))
    values.update(_security(protocol, security, ignore_cert))
    values.update(_switches(allow_copy=allow_copy, allow_paste=allow_paste, read_only=read_only))
    if file_transfer is not None:
        values.update(_file_transfer(protocol, file_transfer))
    if recording is not None:
        values.update(_recording(recording))
    unknown = sorted(set(values) - set(GUACD_1_5_5_ARGS[protocol]))
    if strict and unknown:
        raise ValueError(f"guacd {protocol} has no parameter(s) {', '.join(unknown)}")
    return Parameters(values)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _credentials(protocol: RemoteProtocol, credentials: Credentials | None) -> dict[str, str]:
    if credentials is None:
        return {}
    values = {
        "username": credentials.username,
        "password": credentials.password,
        "domain": credentials.domain,
        "private-key": credentials.private_key,
        "passphrase": credentials.passphrase,
    }
    given = {k: v for k, v in values.items() if v is not None}
    unsupported = sorted(k for k in given if k not in GUACD_1_5_5_ARGS[protocol])
    if unsupported:
        raise ValueError(f"{protocol} takes no {', '.join(unsupported)} credential")
    return given


def _security(
    protocol: RemoteProtocol, security: str | None, ignore_cert: bool | None
) -> dict[str, str]:
    if (security is not None or ignore_cert is not None) and protocol is not RemoteProtocol.RDP:
        raise ValueError("security and ignore_cert apply to rdp only")
    values: dict[str, str] = {}
    if security is not None:
        if security not in RDP_SECURITY_MODES:
            raise ValueError(f"rdp security must be one of {sorted(RDP_SECURITY_MODES)}")
        values["security"] = security
    if ignore_cert is not None:
        values["ignore-cert"] = _flag(ignore_cert)
    return values


def _switches(
    *, allow_copy: bool | None, allow_paste: bool | None, read_only: bool | None
) -> dict[str, str]:
    values: dict[str, str] = {}
    if allow_copy is not None:
        values["disable-copy"] = _flag(not allow_copy)
    if allow_paste is not None:
        values["disable-paste"] = _flag(not allow_paste)
    if read_only is not None:
        values["read-only"] = _flag(read_only)
    return values


def _file_transfer(protocol: RemoteProtocol, transfer: FileTransfer) -> dict[str, str]:
    if protocol is RemoteProtocol.RDP:
        if not transfer.drive_path:
            raise ValueError("rdp file transfer needs a drive_path on the guacd host")
        return {
            "enable-drive": "true",
            "drive-path": transfer.drive_path,
            "create-drive-path": "true",
            "disable-download": _flag(not transfer.allow_download),
            "disable-upload": _flag(not transfer.allow_upload),
        }
    return {
        "enable-sftp": "true",
        "sftp-root-directory": transfer.root_directory,
        "sftp-disable-download": _flag(not transfer.allow_download),
        "sftp-disable-upload": _flag(not transfer.allow_upload),
    }


def _recording(recording: Recording) -> dict[str, str]:
    values = {
        "recording-path": recording.path,
        "recording-name": recording.name,
        "create-recording-path": _flag(recording.create_path),
    }
    if recording.include_keys:
        values["recording-include-keys"] = "true"
    if recording.exclude_output:
        values["recording-exclude-output"] = "true"
    if recording.exclude_mouse:
        values["recording-exclude-mouse"] = "true"
    return values
