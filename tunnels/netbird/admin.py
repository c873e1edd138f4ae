"""One-off NetBird administration a deployment needs: setup keys and groups.

Used by the broker's admin commands through `NetBirdProvider`. Errors are
those of `NetBirdClient`; an unknown group is a `TunnelConfigError`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tunnels.base import TunnelConfigError, TunnelRejected
from tunnels.netbird.client import Lookup, NetBirdClient, NetBirdConflict
from tunnels.netbird.models import Group, raw_named
from tunnels.netbird.queries import find_group, groups_path, list_groups

log = logging.getLogger("tunnels.netbird")


async def create_setup_key(
    client: NetBirdClient,
    name: str,
    groups: Sequence[str],
    *,
    ephemeral: bool,
    expires_in: int,
    usage_limit: int = 1,
) -> str:
    """Create a setup key and return its plain value (shown by NetBird only now).

    Peers enrolled with it join ``groups`` (each a group id or name).
    ``usage_limit=1`` makes a one-off key, more a reusable key limited to that
    many uses, 0 an unlimited reusable key. ``expires_in`` is in seconds (0:
    never). The key is a secret: the caller must not log it. A create whose
    answer was lost is not retried (`TunnelUnavailable`): a key cannot be
    read back, so make a new one.
    """
    if expires_in < 0 or usage_limit < 0:
        raise ValueError("expires_in and usage_limit must be >= 0")
    body = {
        "name": name,
        "type": "one-off" if usage_limit == 1 else "reusable",
        "expires_in": expires_in,
        "auto_groups": await _group_ids(client, groups),
        "usage_limit": usage_limit,
        "ephemeral": ephemeral,
    }
    data = await client.post("/api/setup-keys", body)
    key = data.get("key") if isinstance(data, dict) else None
    if not isinstance(key, str) or not key:
        raise TunnelRejected("NetBird answered the setup-key create without a key")
    log.info("NetBird: created setup key %r for %d group(s)", name, len(groups))
    return key


async def ensure_group(client: NetBirdClient, name: str) -> str:
    """The id of the group called ``name``, creating it (empty) if needed.

    Safe to run from several places at once: a lost or conflicting create is
    resolved by looking the group up by name.
    """
    group = await find_group(client, name)
    if group is not None:
        return group.id
    lookup = Lookup(groups_path(name), lambda data: raw_named(data, name))
    try:
        created = Group.parse(await client.post("/api/groups", {"name": name}, lookup=lookup))
    except NetBirdConflict:
        created = await find_group(client, name)
    if created is None:
        raise TunnelRejected(f"NetBird did not create the group {name!r}")
    log.info("NetBird: group %r is %s", name, created.id)
    return created.id


async def _group_ids(client: NetBirdClient, refs: Sequence[str]) -> list[str]:
    groups = await list_groups(client)
    by_id = {g.id: g.id for g in groups}
    by_name = {g.name: g.id for g in groups}
    ids = []
    for ref in refs:
        group_id = by_id.get(ref) or by_name.get(ref)
        if group_id is None:
            raise TunnelConfigError(f"NetBird has no group with id or name {ref!r}")
        ids.append(group_id)
    return ids
