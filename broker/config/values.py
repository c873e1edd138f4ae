"""Values the loader parses from strings: ``host:port`` endpoints and IP networks.

A field typed with one of these is written as a string (or a list of them)
in the TOML and in ``BROKER_*`` variables; the loader parses it once, and a
bad value stops startup with a `ConfigError` naming the key.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from broker.config.errors import ConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class HostPort:
    """A TCP endpoint; ``host`` is a name or an address (IPv6 without brackets)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_host_port(text: str, key: str) -> HostPort:
    """``"host:port"`` or ``"[v6]:port"``; `ConfigError` naming ``key`` otherwise."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"'{key}' must be host:port, got {text!r}")
    return HostPort(host.strip("[]"), int(port))


def parse_network(text: str, key: str) -> IPNetwork:
    """A CIDR (``"10.0.0.0/8"``) or a single address; host bits may be set."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ConfigError(
            f"'{key}' must be an IP network such as \"10.0.0.0/8\", got {text!r}"
        ) from None


# The field types the loader parses from a string, and how.
PARSERS: dict[object, Callable[[str, str], object]] = {
    HostPort: parse_host_port,
    IPNetwork: parse_network,
}
