"""What a simulated NetBird account starts with: tokens, gateway peers, workspace peers.

A `Seed` is built in code or read from a JSON or TOML file of this shape
(every key optional; shown with the defaults, plus one workspace)::

    {"tokens": [{"token": "nbp_simulated...", "role": "admin",
                 "name": "broker", "service_user": true}],
     "gateway_group": "gateways",
     "gateways": [{"name": "gateway-1", "ip": "127.64.0.2"}],
     "workspaces": [{"name": "ws-linux-desktop", "ip": "127.64.0.10",
                     "connected": true, "id": null, "dns_label": null}],
     "all_to_all": false,
     "dns_domain": "netbird.selfhosted",
     "rng_seed": 0}

Roles are NetBird's: ``owner``, ``admin``, ``network_admin`` may write,
others (``user``, ``auditor``...) only read. Peer IPs must be IPv4 loopback
(``127.64.0.x``): the broker connects to them, and on these machines
traffic outside loopback is forbidden, so the real overlay range
100.64.0.0/10 is refused.
"""

from __future__ import annotations

import ipaddress
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_TOKEN = "nbp_simulatedAdminToken00000000000000000"
WRITE_ROLES = frozenset({"owner", "admin", "network_admin"})
ADMIN_ROLES = frozenset({"owner", "admin"})


@dataclass(frozen=True, slots=True)
class SeedToken:
    """A personal access token and the role of the user it belongs to."""

    token: str = field(repr=False)
    role: str = "admin"
    name: str = "broker"
    service_user: bool = True


@dataclass(frozen=True, slots=True)
class SeedPeer:
    """A peer; ``id`` is generated when ``None``, ``dns_label`` defaults to the name."""

    name: str
    ip: str
    connected: bool = True
    id: str | None = None
    dns_label: str | None = None

    def __post_init__(self) -> None:
        address = ipaddress.ip_address(self.ip)
        if address.version != 4 or not address.is_loopback:
            raise ValueError(f"simulated peer {self.name!r}: {self.ip} is not 127.0.0.0/8")


@dataclass(frozen=True, slots=True)
class Seed:
    tokens: tuple[SeedToken, ...] = (SeedToken(DEFAULT_TOKEN),)
    gateway_group: str = "gateways"
    gateways: tuple[SeedPeer, ...] = (SeedPeer("gateway-1", "127.64.0.2"),)
    workspaces: tuple[SeedPeer, ...] = ()
    all_to_all: bool = False
    dns_domain: str = "netbird.selfhosted"
    rng_seed: int = 0

    def __post_init__(self) -> None:
        if not self.tokens:
            raise ValueError("a simulated NetBird account needs at least one token")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Seed:
        """Build from the documented shape; raises `ValueError`/`TypeError` on a bad one."""
        known = {"tokens", "gateway_group", "gateways", "workspaces", "all_to_all"}
        known |= {"dns_domain", "rng_seed"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown seed keys: {sorted(unknown)}")
        values: dict[str, Any] = dict(data)
        if "tokens" in values:
            values["tokens"] = tuple(SeedToken(**t) for t in values["tokens"])
        for key in ("gateways", "workspaces"):
            if key in values:
                values[key] = tuple(SeedPeer(**p) for p in values[key])
        return cls(**values)

    @classmethod
    def from_file(cls, path: Path) -> Seed:
        """Read a ``.toml`` or JSON seed file."""
        if path.suffix == ".toml":
            return cls.from_mapping(tomllib.loads(path.read_text()))
        return cls.from_mapping(json.loads(path.read_text()))


def demo_seed() -> Seed:
    """An account for the demo: one gateway and a few workspace peers."""
    return Seed(
        workspaces=(
            SeedPeer("ws-linux-desktop", "127.64.0.10"),
            SeedPeer("ws-windows-desktop", "127.64.0.11"),
            SeedPeer("ws-web-app", "127.64.0.12"),
            SeedPeer("ws-offline", "127.64.0.13", connected=False),
        )
    )
