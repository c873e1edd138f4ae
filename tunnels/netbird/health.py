"""Readiness of the NetBird provider: what must hold before sessions can launch.

Three checks, run concurrently, each bounded by ``check_timeout``:

- ``netbird_credentials``: the token works (``GET /api/users/current``) and
  its role may manage policies; a warning when it is not a service user.
- ``netbird_gateway_group``: the gateway group exists; a warning when it has
  no peers (no gateway could reach a workspace).
- ``netbird_policies``: the policies can be listed; a warning when an
  enabled policy connects ``All`` to ``All``: while one exists, per-session
  policies restrict nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tunnels.base import Check, Health, TunnelError
from tunnels.netbird.client import NetBirdClient
from tunnels.netbird.models import GroupRef, Policy
from tunnels.netbird.queries import current_user, find_group, list_policies
from tunnels.netbird.settings import NetBirdSettings

POLICY_ROLES = frozenset({"owner", "admin", "network_admin"})
_ALL = "All"


async def readiness(client: NetBirdClient, settings: NetBirdSettings) -> Health:
    checks = await asyncio.gather(
        _bounded("netbird_credentials", settings.check_timeout, lambda: _credentials(client)),
        _bounded(
            "netbird_gateway_group",
            settings.check_timeout,
            lambda: _gateway_group(client, settings.gateway_group),
        ),
        _bounded("netbird_policies", settings.check_timeout, lambda: _policies(client)),
    )
    return Health(tuple(checks))


def describe(settings: NetBirdSettings, health: Health) -> str:
    """Readiness as lines for a terminal (the token is never shown)."""
    lines = [
        f"NetBird at {settings.base_url}, gateway group {settings.gateway_group!r}: "
        + ("ready" if health.ok else "NOT READY")
    ]
    for check in health.checks:
        mark = "ok" if check.ok else "FAIL"
        lines.append(f"  [{mark}] {check.name}: {check.detail}")
        if check.warning:
            lines.append(f"  [warning] {check.name}: {check.warning}")
    return "\n".join(lines)


async def _bounded(name: str, limit: float, check: Callable[[], Awaitable[Check]]) -> Check:
    try:
        async with asyncio.timeout(limit):
            return await check()
    except TimeoutError:
        return Check(name, False, f"no answer from NetBird within {limit:g}s")
    except TunnelError as exc:
        return Check(name, False, exc.message)


async def _credentials(client: NetBirdClient) -> Check:
    user = await current_user(client)
    detail = f"token of {user.name or user.id!r}, role {user.role!r}"
    if user.role not in POLICY_ROLES:
        return Check(
            "netbird_credentials",
            False,
            f"{detail}: this role cannot manage policies; give the service user network_admin",
        )
    warning = None if user.is_service_user else "the token belongs to a person, not a service user"
    return Check("netbird_credentials", True, detail, warning)


async def _gateway_group(client: NetBirdClient, name: str) -> Check:
    group = await find_group(client, name)
    if group is None:
        return Check("netbird_gateway_group", False, f"no group named {name!r}")
    detail = f"group {name!r} ({group.id}) has {group.peers_count} peer(s)"
    warning = None if group.peers_count else "the gateway group has no peers: nothing can connect"
    return Check("netbird_gateway_group", True, detail, warning)


async def _policies(client: NetBirdClient) -> Check:
    policies = await list_policies(client)
    everyone = await find_group(client, _ALL)
    all_id = everyone.id if everyone else None
    open_ones = [p.name or p.id for p in policies if _all_to_all(p, all_id)]
    detail = f"{len(policies)} polic{'y' if len(policies) == 1 else 'ies'}"
    if not open_ones:
        return Check("netbird_policies", True, detail)
    warning = (
        f"enabled policy {', '.join(map(repr, open_ones))} connects All to All: per-session "
        "policies change nothing while it exists; disable or delete it"
    )
    return Check("netbird_policies", True, detail, warning)


def _all_to_all(policy: Policy, all_id: str | None) -> bool:
    def is_all(ref: GroupRef) -> bool:
        return ref.name == _ALL or (all_id is not None and ref.id == all_id)

    return policy.enabled and any(
        rule.enabled and any(map(is_all, rule.sources)) and any(map(is_all, rule.destinations))
        for rule in policy.rules
    )
