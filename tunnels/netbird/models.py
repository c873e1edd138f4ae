"""NetBird objects as the provider reads them, and the per-session policy it writes.

Parsing is lenient, as live servers differ from the spec: unknown fields are
ignored, ``null`` or missing lists read as empty, missing booleans as
``False`` (what NetBird itself does), and list entries that are not objects
are skipped. A parser returns ``None`` for something without an ``id``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

_T = TypeVar("_T")

POLICY_PREFIX = "broker:"
_SESSION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_session_id(value: str) -> bool:
    """Whether ``value`` is a session id as the broker writes it (lowercase UUID)."""
    return _SESSION_ID.fullmatch(value) is not None


def policy_name(session_id: str) -> str:
    return POLICY_PREFIX + session_id


def session_of(name: str) -> str | None:
    """The session id in a ``broker:<uuid>`` policy name; ``None`` for other names."""
    if not name.startswith(POLICY_PREFIX):
        return None
    rest = name[len(POLICY_PREFIX) :]
    return rest if is_session_id(rest) else None


def grant_policy_body(session_id: str, group_id: str, peer_id: str, port: int) -> dict[str, Any]:
    """The policy opening ``port`` from the gateway group to one peer.

    Both ``enabled`` flags are explicit (omitted booleans decode as false),
    ``destinationResource`` is camelCase and ``ports`` are strings.
    """
    name = policy_name(session_id)
    rule = {
        "name": name,
        "enabled": True,
        "action": "accept",
        "bidirectional": False,
        "protocol": "tcp",
        "ports": [str(port)],
        "sources": [group_id],
        "destinationResource": {"id": peer_id, "type": "peer"},
    }
    return {"name": name, "description": session_id, "enabled": True, "rules": [rule]}


@dataclass(frozen=True, slots=True)
class Peer:
    id: str
    name: str
    ip: str
    dns_label: str
    connected: bool

    @classmethod
    def parse(cls, data: object) -> Peer | None:
        if not isinstance(data, dict) or not _str(data, "id"):
            return None
        return cls(
            id=_str(data, "id"),
            name=_str(data, "name"),
            ip=_str(data, "ip"),
            dns_label=_str(data, "dns_label"),
            connected=data.get("connected") is True,
        )


@dataclass(frozen=True, slots=True)
class GroupRef:
    """A group as a rule names it: an object (responses) or a bare id (requests)."""

    id: str
    name: str | None = None

    @classmethod
    def parse(cls, data: object) -> GroupRef | None:
        if isinstance(data, str) and data:
            return cls(data)
        if isinstance(data, dict) and _str(data, "id"):
            name = data.get("name")
            return cls(_str(data, "id"), name if isinstance(name, str) else None)
        return None


@dataclass(frozen=True, slots=True)
class Group:
    id: str
    name: str
    peers_count: int

    @classmethod
    def parse(cls, data: object) -> Group | None:
        if not isinstance(data, dict) or not _str(data, "id"):
            return None
        count = data.get("peers_count")
        if not isinstance(count, int):
            count = len(_list(data, "peers"))
        return cls(_str(data, "id"), _str(data, "name"), count)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    enabled: bool
    action: str
    protocol: str
    ports: tuple[str, ...]
    sources: tuple[GroupRef, ...]
    destinations: tuple[GroupRef, ...]
    destination_peer: str | None

    @classmethod
    def parse(cls, data: object) -> Rule | None:
        if not isinstance(data, dict):
            return None
        resource = data.get("destinationResource")
        peer = _str(resource, "id") if isinstance(resource, dict) else ""
        return cls(
            name=_str(data, "name"),
            enabled=data.get("enabled") is True,
            action=_str(data, "action"),
            protocol=_str(data, "protocol"),
            ports=tuple(p for p in _list(data, "ports") if isinstance(p, str)),
            sources=_groups(data, "sources"),
            destinations=_groups(data, "destinations"),
            destination_peer=peer or None,
        )


@dataclass(frozen=True, slots=True)
class Policy:
    id: str
    name: str
    enabled: bool
    rules: tuple[Rule, ...]

    @classmethod
    def parse(cls, data: object) -> Policy | None:
        if not isinstance(data, dict) or not _str(data, "id"):
            return None
        rules = (Rule.parse(r) for r in _list(data, "rules"))
        return cls(
            id=_str(data, "id"),
            name=_str(data, "name"),
            enabled=data.get("enabled") is True,
            rules=tuple(r for r in rules if r is not None),
        )


@dataclass(frozen=True, slots=True)
class CurrentUser:
    id: str
    name: str
    role: str
    is_service_user: bool

    @classmethod
    def parse(cls, data: object) -> CurrentUser | None:
        if not isinstance(data, dict) or not _str(data, "id"):
            return None
        return cls(
            id=_str(data, "id"),
            name=_str(data, "name") or _str(data, "email"),
            role=_str(data, "role"),
            is_service_user=data.get("is_service_user") is True,
        )


def parse_all(data: object, parse: Callable[[object], _T | None]) -> list[_T]:
    """Parse a list answer (``null`` reads as empty), skipping what does not parse."""
    if not isinstance(data, list):
        return []
    return [item for item in map(parse, data) if item is not None]


def raw_named(data: object, name: str) -> Any:
    """The first object with an id called ``name`` in a list answer, as sent."""
    for raw in data if isinstance(data, list) else []:
        if isinstance(raw, dict) and raw.get("name") == name and _str(raw, "id"):
            return raw
    return None


def _str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    return value if isinstance(value, list) else []


def _groups(data: dict[str, Any], key: str) -> tuple[GroupRef, ...]:
    refs = (GroupRef.parse(item) for item in _list(data, key))
    return tuple(r for r in refs if r is not None)
