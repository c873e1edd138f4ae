"""The state of a simulated NetBird account and the rules NetBird applies to changes.

Operations take decoded request bodies and return the JSON NetBird would
answer, or raise `ApiError` with NetBird's status and message. Behaviours
copied from the real server (``shared/netbird/NOTES.md``): 20-character
xid ids, ``null`` for empty lists, omitted booleans read as false, unknown
group ids in a rule's sources/destinations silently dropped, 409 for a
duplicate group name, 400 for deleting a group a policy or key still uses.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tunnels.simulated.seed import Seed, SeedPeer, SeedToken

_B32HEX = "0123456789abcdefghijklmnopqrstuv"
_PROTOCOLS = frozenset({"all", "tcp", "udp", "icmp", "netbird-ssh"})
_NEVER = "0001-01-01T00:00:00Z"
ALL_GROUP = "All"

Json = dict[str, Any]


class ApiError(Exception):
    """An error answer: ``{"message": message, "code": status}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class XidSource:
    """Ids shaped like NetBird's xids: time, machine, pid, counter in base32hex."""

    def __init__(self, rng: random.Random) -> None:
        self._machine_pid = rng.randbytes(5)
        self._counter = rng.getrandbits(24)

    def __call__(self) -> str:
        self._counter = (self._counter + 1) & 0xFFFFFF
        raw = int(time.time()).to_bytes(4, "big") + self._machine_pid
        value = int.from_bytes(raw + self._counter.to_bytes(3, "big"), "big") << 4
        return "".join(_B32HEX[(value >> (5 * i)) & 31] for i in reversed(range(20)))


@dataclass
class User:
    id: str
    name: str
    role: str
    service_user: bool


@dataclass
class Peer:
    id: str
    name: str
    ip: str
    connected: bool
    dns_label: str


@dataclass
class Group:
    id: str
    name: str
    peers: list[str] = field(default_factory=list)
    resources: list[Json] = field(default_factory=list)


@dataclass
class Policy:
    id: str
    body: Json  # the stored policy, groups as ids; rendered by `policy_json`


@dataclass
class SetupKey:
    id: str
    key: str
    body: Json


class Account:
    """One NetBird account. Not thread-safe; used from one event loop."""

    def __init__(self, seed: Seed, rng: random.Random) -> None:
        self.seed = seed
        self.new_id = XidSource(rng)
        self.created = _iso(datetime.now(UTC))
        self.users = {t.token: self._user(t) for t in seed.tokens}
        self.peers: dict[str, Peer] = {}
        self.groups: dict[str, Group] = {}
        self.policies: dict[str, Policy] = {}
        self.setup_keys: dict[str, SetupKey] = {}
        self._populate(seed)

    # --- reading -------------------------------------------------------

    def user_json(self, token: str) -> Json:
        user = self.users[token]
        return {
            "id": user.id,
            "email": f"{user.name}@simulated.invalid" if not user.service_user else "",
            "name": user.name,
            "role": user.role,
            "status": "active",
            "auto_groups": [],
            "is_current": True,
            "is_service_user": user.service_user,
            "is_blocked": False,
            "pending_approval": False,
            "issued": "api",
            "last_login": _NEVER,
            "permissions": {"is_restricted": False, "modules": {}},
        }

    def peer_json(self, peer: Peer, *, batch: bool = False) -> Json:
        data: Json = {
            "id": peer.id,
            "name": peer.name,
            "ip": peer.ip,
            "connection_ip": "127.0.0.1",
            "connected": peer.connected,
            "last_seen": self.created,
            "os": "Linux 6.1",
            "kernel_version": "6.1.0",
            "geoname_id": 0,
            "version": "0.77.1",
            "groups": [self._group_minimum(g) for g in self._groups_of(peer.id)],
            "ssh_enabled": False,
            "user_id": "",
            "hostname": peer.name,
            "ui_version": "",
            "dns_label": peer.dns_label,
            "login_expiration_enabled": False,
            "login_expired": False,
            "last_login": self.created,
            "inactivity_expiration_enabled": False,
            "approval_required": False,
            "country_code": "",
            "city_name": "",
            "serial_number": "",
            "extra_dns_labels": [],
            "ephemeral": False,
            "created_at": self.created,
        }
        if batch:
            data["accessible_peers_count"] = 0
        return data

    def group_json(self, group: Group) -> Json:
        peers = [{"id": p, "name": self.peers[p].name} for p in group.peers if p in self.peers]
        return {
            **self._group_minimum(group),
            "peers": peers or None,
            "resources": list(group.resources) or None,
        }

    def policy_json(self, policy: Policy) -> Json:
        body = policy.body
        return {
            "id": policy.id,
            "name": body["name"],
            "description": body["description"],
            "enabled": body["enabled"],
            "source_posture_checks": body["source_posture_checks"] or None,
            "rules": [self._rule_json(r) for r in body["rules"]],
        }

    def setup_key_json(self, key: SetupKey, *, clear: bool = False) -> Json:
        shown = key.key if clear else key.key[:5] + "****"
        return {"id": key.id, "key": shown, **key.body}

    def group_named(self, name: str) -> Group | None:
        return next((g for g in self.groups.values() if g.name == name), None)

    # --- groups --------------------------------------------------------

    def create_group(self, body: Json) -> Json:
        group = Group(self.new_id(), "")
        self._fill_group(group, body)
        self.groups[group.id] = group
        return self.group_json(group)

    def update_group(self, group_id: str, body: Json) -> Json:
        group = self._group(group_id)
        self._fill_group(group, body)
        return self.group_json(group)

    def delete_group(self, group_id: str) -> None:
        group = self._group(group_id)
        if group.name == ALL_GROUP:
            raise ApiError(400, "deleting group ALL is not allowed")
        for policy in self.policies.values():
            if any(group_id in _rule_groups(r) for r in policy.body["rules"]):
                raise ApiError(400, f"group has been linked to policy: {policy.body['name']}")
        for key in self.setup_keys.values():
            if group_id in key.body["auto_groups"]:
                raise ApiError(400, f"group has been linked to setup key: {key.body['name']}")
        del self.groups[group_id]

    # --- policies ------------------------------------------------------

    def create_policy(self, body: Json) -> Json:
        policy = Policy(self.new_id(), self._policy_body(body))
        self.policies[policy.id] = policy
        return self.policy_json(policy)

    def update_policy(self, policy_id: str, body: Json) -> Json:
        policy = self.policy(policy_id)
        policy.body = self._policy_body(body)
        return self.policy_json(policy)

    def delete_policy(self, policy_id: str) -> None:
        self.policy(policy_id)
        del self.policies[policy_id]

    def policy(self, policy_id: str) -> Policy:
        if policy_id not in self.policies:
            raise ApiError(404, f"policy {policy_id} not found")
        return self.policies[policy_id]

    # --- setup keys ----------------------------------------------------

    def create_setup_key(self, body: Json) -> Json:
        kind = body.get("type")
        if kind not in ("one-off", "reusable"):
            raise ApiError(422, "invalid setup key type")
        expires_in = body.get("expires_in") or 0
        if not isinstance(expires_in, int) or expires_in < 0:
            raise ApiError(422, "expiresIn should be a non-negative number")
        groups = body.get("auto_groups") or []
        for group_id in groups:
            self._group(group_id, status=422)
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=expires_in) if expires_in else None
        key = SetupKey(
            self.new_id(),
            str(uuid.uuid4()).upper(),
            {
                "name": str(body.get("name") or ""),
                "expires": _iso(expires) if expires else _NEVER,
                "type": kind,
                "valid": True,
                "revoked": False,
                "used_times": 0,
                "last_used": _NEVER,
                "state": "valid",
                "auto_groups": list(groups),
                "updated_at": _iso(now),
                "usage_limit": 1 if kind == "one-off" else int(body.get("usage_limit") or 0),
                "ephemeral": body.get("ephemeral") is True,
                "allow_extra_dns_labels": body.get("allow_extra_dns_labels") is True,
            },
        )
        self.setup_keys[key.id] = key
        return self.setup_key_json(key, clear=True)

    # --- internals -----------------------------------------------------

    def _user(self, token: SeedToken) -> User:
        return User(self.new_id(), token.name, token.role, token.service_user)

    def _populate(self, seed: Seed) -> None:
        every = self._add_group(ALL_GROUP)
        gateways = self._add_group(seed.gateway_group)
        for spec in seed.gateways:
            gateways.peers.append(self._add_peer(spec).id)
        for spec in seed.workspaces:
            self._add_peer(spec)
        every.peers.extend(self.peers)
        if seed.all_to_all:
            self.create_policy(_default_policy(every.id))

    def _add_group(self, name: str) -> Group:
        group = Group(self.new_id(), name)
        self.groups[group.id] = group
        return group

    def _add_peer(self, spec: SeedPeer) -> Peer:
        label = f"{spec.dns_label or spec.name}.{self.seed.dns_domain}"
        peer = Peer(spec.id or self.new_id(), spec.name, spec.ip, spec.connected, label)
        self.peers[peer.id] = peer
        return peer

    def _group(self, group_id: str, *, status: int = 404) -> Group:
        if group_id not in self.groups:
            raise ApiError(status, f"group {group_id} not found")
        return self.groups[group_id]

    def _groups_of(self, peer_id: str) -> list[Group]:
        return [g for g in self.groups.values() if peer_id in g.peers]

    def _group_minimum(self, group: Group) -> Json:
        return {
            "id": group.id,
            "name": group.name,
            "peers_count": len(group.peers),
            "resources_count": len(group.resources),
            "issued": "api",
        }

    def _fill_group(self, group: Group, body: Json) -> None:
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise ApiError(422, "group name shouldn't be empty")
        other = self.group_named(name)
        if other is not None and other.id != group.id:
            raise ApiError(409, f"group with name {name} already exists")
        group.name = name
        group.peers = [p for p in body.get("peers") or [] if p in self.peers]
        group.resources = list(body.get("resources") or [])

    def _policy_body(self, body: Json) -> Json:
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise ApiError(422, "policy name shouldn't be empty")
        rules = body.get("rules") or []
        if not rules:
            raise ApiError(422, "policy should have at least one rule")
        return {
            "name": name,
            "description": str(body.get("description") or ""),
            "enabled": body.get("enabled") is True,
            "source_posture_checks": list(body.get("source_posture_checks") or []),
            "rules": [self._rule(r) for r in rules],
        }

    def _rule(self, rule: Json) -> Json:
        protocol = rule.get("protocol")
        if protocol not in _PROTOCOLS:
            raise ApiError(422, f"invalid protocol {protocol!r}")
        if rule.get("action") not in ("accept", "drop"):
            raise ApiError(422, "invalid action")
        ports = rule.get("ports") or []
        if any(not str(p).isdigit() or not 0 < int(p) < 65536 for p in ports):
            raise ApiError(422, "valid port value is in 1..65535 range")
        if ports and protocol in ("all", "icmp"):
            raise ApiError(422, "for ALL or ICMP protocol ports is not allowed")
        stored = {
            "id": self.new_id(),
            "name": str(rule.get("name") or ""),
            "description": str(rule.get("description") or ""),
            "enabled": rule.get("enabled") is True,
            "action": rule["action"],
            "bidirectional": rule.get("bidirectional") is True,
            "protocol": protocol,
            # NetBird drops unknown group ids here without a word.
            "sources": [g for g in rule.get("sources") or [] if g in self.groups],
            "destinations": [g for g in rule.get("destinations") or [] if g in self.groups],
        }
        for key in ("ports", "port_ranges", "sourceResource", "destinationResource"):
            if rule.get(key):
                stored[key] = rule[key]
        return stored

    def _rule_json(self, rule: Json) -> Json:
        def groups(ids: list[str]) -> list[Json] | None:
            found = [self._group_minimum(self.groups[g]) for g in ids if g in self.groups]
            return found or None

        return {
            **rule,
            "sources": groups(rule["sources"]),
            "destinations": groups(rule["destinations"]),
        }


def _default_policy(all_id: str) -> Json:
    """The policy a new NetBird account starts with: All to All, everything."""
    rule = {
        "name": "Default",
        "description": "",
        "enabled": True,
        "action": "accept",
        "bidirectional": True,
        "protocol": "all",
        "sources": [all_id],
        "destinations": [all_id],
    }
    description = "This is a default rule that allows connections between all the resources"
    return {"name": "Default", "description": description, "enabled": True, "rules": [rule]}


def _rule_groups(rule: Json) -> set[str]:
    return {*rule["sources"], *rule["destinations"]}


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
