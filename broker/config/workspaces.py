"""``[[workspaces]]``: the desktops and web apps users may launch."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from broker.config.errors import ConfigError

WORKSPACE_TYPES = ("html5", "rdp", "vnc", "ssh", "linux")
GUACD_PROTOCOLS = ("rdp", "vnc", "ssh")
DEFAULT_PORTS = {"rdp": 3389, "vnc": 5900, "ssh": 22, "html5": 80}


@dataclass(frozen=True)
class WorkspaceConfig:
    id: str
    name: str
    type: str
    protocol: str = ""
    description: str = ""
    host: str = "127.0.0.1"
    port: int = 0
    peer: str = ""
    netbird_group: str = ""
    probe: bool = False
    allowed_roles: tuple[str, ...] = ()
    username: str = ""
    password_env: str = ""
    password_file: str = ""
    domain: str = ""
    security: str = ""
    ignore_cert: bool = False
    allow_copy: bool = True
    allow_paste: bool = True
    read_only: bool = False
    recording_path: str = ""
    recording_include_keys: bool = False
    max_session_seconds: int = 0
    idle_no_viewer_seconds: int = 0
    idle_no_input_seconds: int = 0
    guacd: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.protocol:
            default = "vnc" if self.type == "linux" else self.type
            object.__setattr__(self, "protocol", default)
        if not self.port:
            object.__setattr__(self, "port", DEFAULT_PORTS.get(self.protocol, 0))


def validate_workspaces(workspaces: tuple[WorkspaceConfig, ...]) -> None:
    """`ConfigError` naming the first workspace key that is wrong (ids must be
    unique and safe in URLs and NetBird names)."""
    seen: set[str] = set()
    for i, ws in enumerate(workspaces):
        key = f"workspaces[{i}]"
        if ws.id in seen:
            raise ConfigError(f"'{key}.id': duplicate workspace id {ws.id!r}")
        seen.add(ws.id)
        if not _valid_id(ws.id):
            raise ConfigError(f"'{key}.id' must be 1-64 ASCII letters, digits, '-' or '_'")
        if ws.type not in WORKSPACE_TYPES:
            raise ConfigError(f"'{key}.type' must be one of {', '.join(WORKSPACE_TYPES)}")
        if ws.type != "html5" and ws.protocol not in GUACD_PROTOCOLS:
            raise ConfigError(f"'{key}.protocol' must be one of {', '.join(GUACD_PROTOCOLS)}")
        if not 0 < ws.port < 65536:
            raise ConfigError(f"'{key}.port' must be between 1 and 65535")


def _valid_id(value: str) -> bool:
    # ASCII only: str.isalnum() also accepts look-alikes such as a fullwidth "ｏ".
    bare = value.replace("-", "").replace("_", "")
    return 0 < len(value) <= 64 and bare.isascii() and bare.isalnum()


def workspace_password(ws: WorkspaceConfig, env: Mapping[str, str] | None = None) -> str | None:
    """The workspace's remote-desktop password, read now (so a rotated secret
    needs no restart) from the variable ``password_env`` names or from
    ``password_file``; None when neither is configured. Raises `ConfigError`
    (naming the setting, never the value) when the source is missing."""
    env = os.environ if env is None else env
    if ws.password_env:
        if ws.password_env not in env:
            raise ConfigError(f"workspace {ws.id}: variable {ws.password_env} is not set")
        return env[ws.password_env]
    if ws.password_file:
        try:
            return Path(ws.password_file).read_text().rstrip("\n")
        except OSError as exc:
            raise ConfigError(
                f"workspace {ws.id}: cannot read password_file: {exc.strerror}"
            ) from None
    return None
