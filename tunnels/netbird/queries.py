"""Read-only NetBird look-ups shared by the provider, its readiness checks and admin helpers.

Each raises what `NetBirdClient` raises (`TunnelUnavailable` when NetBird
cannot be reached, `TunnelConfigError` for credentials or roles) plus the
`TunnelConfigError` documented below for objects that do not exist.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

from tunnels.base import TunnelConfigError
from tunnels.netbird.client import NetBirdClient, NetBirdNotFound
from tunnels.netbird.models import CurrentUser, Group, Peer, Policy, parse_all

# What a NetBird id can look like; anything else is only ever a peer name.
_ID_LIKE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def groups_path(name: str) -> str:
    """``GET`` path listing the group called ``name`` (NetBird matches exactly)."""
    return "/api/groups?" + urlencode({"name": name})


async def find_group(client: NetBirdClient, name: str) -> Group | None:
    """The group named ``name``, or ``None``. NetBird answers 404 for none."""
    try:
        data = await client.get(groups_path(name))
    except NetBirdNotFound:
        return None
    matches = [g for g in parse_all(data, Group.parse) if g.name == name]
    return matches[0] if matches else None


async def list_groups(client: NetBirdClient) -> list[Group]:
    return parse_all(await client.get("/api/groups"), Group.parse)


async def list_policies(client: NetBirdClient) -> list[Policy]:
    """Every policy of the account (NetBird does not paginate them)."""
    return parse_all(await client.get("/api/policies"), Policy.parse)


async def current_user(client: NetBirdClient) -> CurrentUser:
    user = CurrentUser.parse(await client.get("/api/users/current"))
    if user is None:
        raise TunnelConfigError("NetBird answered /api/users/current without a user")
    return user


async def find_peer(client: NetBirdClient, ref: str, *, owner: str = "") -> Peer:
    """The peer whose id, or else whose exact name, is ``ref``.

    Raises `TunnelConfigError` when no peer or several peers match (naming
    ``owner``, e.g. the workspace, in the message). ``GET /api/peers?name=``
    matches substrings, so only exact names count.
    """
    whose = f" (peer of {owner})" if owner else ""
    if _ID_LIKE.fullmatch(ref):
        try:
            peer = Peer.parse(await client.get("/api/peers/" + quote(ref, safe="")))
        except NetBirdNotFound:
            peer = None
        if peer is not None:
            return peer
    peers = parse_all(await client.get("/api/peers", params={"name": ref}), Peer.parse)
    exact = [p for p in peers if p.name == ref]
    if not exact:
        raise TunnelConfigError(f"NetBird has no peer with id or name {ref!r}{whose}")
    if len(exact) > 1:
        raise TunnelConfigError(
            f"{len(exact)} NetBird peers are named {ref!r}{whose}; name the peer by its id"
        )
    return exact[0]
