"""``[server]``: where the broker listens and which requests it believes."""

from __future__ import annotations

from dataclasses import dataclass

from broker.config.errors import ConfigError
from broker.config.values import IPNetwork

EVENT_LOOPS = ("uvloop", "asyncio")


@dataclass(frozen=True)
class ServerSettings:
    """``trusted_proxies`` are parsed networks: only a peer inside one of them
    may say, in ``X-Forwarded-For`` and ``X-Forwarded-Proto``, who the client
    is and which scheme it used. ``allow_loopback_hosts`` lets requests name
    ``localhost`` or a loopback address as their ``Host`` (development: the
    demo and ``--insecure-dev`` turn it on). A connection must send its
    request headers within ``header_timeout_seconds``, and one address may
    hold at most ``max_pending_headers_per_ip`` connections still sending
    them (`broker.web.connections`). ``workers`` processes serve the one
    port (``broker serve --workers``, `broker.workers`; PostgreSQL only).
    ``event_loop`` is what ``broker serve`` runs on: ``"uvloop"`` (the
    default; asyncio's own loop where uvloop cannot be imported) or
    ``"asyncio"``."""

    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    trusted_proxies: tuple[IPNetwork, ...] = ()
    cors_origins: tuple[str, ...] = ()
    data_dir: str = "data"
    max_body_bytes: int = 65536
    drain_grace_seconds: float = 30.0
    allow_loopback_hosts: bool = False
    header_timeout_seconds: float = 10.0
    max_pending_headers_per_ip: int = 32
    workers: int = 1
    event_loop: str = "uvloop"

    def __post_init__(self) -> None:
        if self.header_timeout_seconds <= 0:
            raise ConfigError("'server.header_timeout_seconds' must be more than 0")
        if self.max_pending_headers_per_ip < 1:
            raise ConfigError("'server.max_pending_headers_per_ip' must be at least 1")
        if self.workers < 1:
            raise ConfigError("'server.workers' must be at least 1")
        if self.event_loop not in EVENT_LOOPS:
            raise ConfigError(
                f"'server.event_loop' must be one of {', '.join(map(repr, EVENT_LOOPS))}"
            )
