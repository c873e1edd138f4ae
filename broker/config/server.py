"""``[server]``: where the broker listens and which requests it believes."""

from __future__ import annotations

from dataclasses import dataclass

from broker.config.values import IPNetwork


@dataclass(frozen=True)
class ServerSettings:
    """``trusted_proxies`` are parsed networks: only a peer inside one of them
    may say, in ``X-Forwarded-For`` and ``X-Forwarded-Proto``, who the client
    is and which scheme it used. ``allow_loopback_hosts`` lets requests name
    ``localhost`` or a loopback address as their ``Host`` (development: the
    demo and ``--insecure-dev`` turn it on)."""

    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    trusted_proxies: tuple[IPNetwork, ...] = ()
    cors_origins: tuple[str, ...] = ()
    data_dir: str = "data"
    max_body_bytes: int = 65536
    drain_grace_seconds: float = 30.0
    allow_loopback_hosts: bool = False
