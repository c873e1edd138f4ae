"""What the config tests share: a secret in the environment, a minimal
workspace, and loading a file expecting success or a `ConfigError`."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.config import ConfigError, Settings, load_settings

REPO = Path(__file__).resolve().parents[3]
SECRET_ENV = {"BROKER_AUTH_HS256_SECRET": "env-secret-0123456789"}
NETBIRD_ENV = {
    **SECRET_ENV,
    "BROKER_TUNNEL_PROVIDER": "netbird",
    "BROKER_NETBIRD_BASE_URL": "https://nb.example",
    "BROKER_NETBIRD_TOKEN": "nbp_x",
}

WORKSPACE = """
[[workspaces]]
id = "ws-one"
name = "One"
type = "rdp"
"""


def load(path: Path, env: dict[str, str] | None = None) -> Settings:
    return load_settings(path, env=SECRET_ENV if env is None else env)


def refused(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(path, env)
    return str(info.value)
