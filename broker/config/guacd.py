"""``[guacd]`` and ``[viewer]``: the guacd daemons and the browser side of their tunnel."""

from __future__ import annotations

from dataclasses import dataclass

from broker.config.values import HostPort


@dataclass(frozen=True)
class GuacdSettings:
    """``endpoints`` are parsed at load (``"host:port"`` in the TOML); new
    connections go to the healthy one with the fewest live connections
    (`protocols.guacd_pool`). ``health_check_seconds`` 0: no checks, every
    endpoint is always tried in order."""

    endpoints: tuple[HostPort, ...] = (HostPort("127.0.0.1", 4822),)
    tls: bool = False
    tls_ca_file: str = ""
    connect_timeout_seconds: float = 5.0
    reply_timeout_seconds: float = 10.0
    health_check_seconds: float = 10.0


@dataclass(frozen=True)
class ViewerSettings:
    guacamole_js: str = ""
    held_input_limit: int = 256
