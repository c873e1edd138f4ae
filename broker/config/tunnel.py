"""``[tunnel]`` and ``[netbird]``: which provider opens the network path, and its settings.

The NetBird provider's settings type is `tunnels.netbird.settings.NetBirdSettings`
(``tunnels`` may not import the broker); `NetBirdSection` is the
``[netbird]`` section as an operator writes it, with the same key names and
defaults, plus ``token_file``. `netbird_settings` turns one into the other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from broker.config.errors import ConfigError
from tunnels.netbird.settings import NetBirdSettings

PROVIDERS = ("direct", "netbird")

_NETBIRD: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(NetBirdSettings)}


@dataclass(frozen=True)
class TunnelSettings:
    provider: str = "direct"
    reconcile_interval_seconds: float = 60.0
    revoke_retry_seconds: float = 5.0
    launch_timeout_seconds: float = 120.0


@dataclass(frozen=True)
class NetBirdSection:
    """``[netbird]`` as written. ``token`` is never read from the TOML: the
    loader fills it from ``BROKER_NETBIRD_TOKEN`` or ``token_file``."""

    base_url: str = ""
    token_file: str = ""
    gateway_group: str = _NETBIRD["gateway_group"]
    timeout_seconds: float = _NETBIRD["timeout_seconds"]
    max_retries: int = _NETBIRD["max_retries"]
    max_retry_seconds: float = _NETBIRD["max_retry_seconds"]
    prefer_dns: bool = _NETBIRD["prefer_dns"]
    token: str = field(default="", repr=False)


def validate_provider(tunnel: TunnelSettings) -> None:
    if tunnel.provider not in PROVIDERS:
        raise ConfigError('\'tunnel.provider\' must be "direct" or "netbird"')


def netbird_settings(
    section: NetBirdSection, tunnel: TunnelSettings, *, demo: bool
) -> NetBirdSettings | None:
    """The NetBird provider's settings when ``tunnel.provider`` is netbird;
    None for the direct provider and in the demo (which points the provider
    at its simulator). Raises `ConfigError` naming the missing key or
    variable, or the unusable value (never the token)."""
    if tunnel.provider != "netbird" or demo:
        return None
    if not section.base_url:
        raise ConfigError("missing required setting 'netbird.base_url'")
    if not section.token:
        raise ConfigError("missing NetBird token: set BROKER_NETBIRD_TOKEN or 'netbird.token_file'")
    try:
        return NetBirdSettings(
            base_url=section.base_url,
            token=section.token,
            gateway_group=section.gateway_group,
            timeout_seconds=section.timeout_seconds,
            max_retries=section.max_retries,
            max_retry_seconds=section.max_retry_seconds,
            prefer_dns=section.prefer_dns,
        )
    except ValueError as exc:
        raise ConfigError(f"'netbird': {exc}") from None
