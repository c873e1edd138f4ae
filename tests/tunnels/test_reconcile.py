"""Reconciliation: leftovers of ended sessions go, live sessions' policies stay."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from tests.tunnels.conftest import new_session_id
from tunnels.base import Target
from tunnels.netbird.provider import NetBirdProvider
from tunnels.netbird.settings import NetBirdSettings
from tunnels.reconcile import reconcile
from tunnels.simulated.faults import FaultKind
from tunnels.simulated.server import SimulatedNetBird

TARGET = Target("ws-linux-desktop", "10.0.0.1", 3389, peer="ws-linux")


async def grants(provider: NetBirdProvider, count: int) -> dict[str, str]:
    made = {}
    for _ in range(count):
        sid = new_session_id()
        grant = await provider.grant(sid, TARGET)
        assert grant.grant_id is not None
        made[sid] = grant.grant_id
    return made


def hand_made(sim: SimulatedNetBird, name: str) -> None:
    rule = {
        "name": name,
        "enabled": True,
        "action": "accept",
        "bidirectional": False,
        "protocol": "tcp",
        "ports": ["22"],
        "sources": [sim.group_id("gateways")],
    }
    sim.account.create_policy({"name": name, "enabled": True, "rules": [rule]})


async def test_deletes_leftovers_once_and_never_a_live_policy(
    sim: SimulatedNetBird, provider: NetBirdProvider
) -> None:
    live = await grants(provider, 2)
    ended = await grants(provider, 3)
    hand_made(sim, "broker:hand-made")  # not broker:<uuid>: not the broker's

    first = await reconcile(provider, set(live), live)
    second = await reconcile(provider, set(live), live)

    assert {(g.session_id, g.grant_id) for g in first.deleted} == set(ended.items())
    assert second.deleted == () and second.lost == () and second.failed == ()
    names = sorted(p["name"] for p in sim.policies())
    assert names == sorted(["broker:hand-made", *(f"broker:{sid}" for sid in live)])
    assert len([r for r in sim.requests if r.method == "DELETE"]) == 3


async def test_reports_active_sessions_whose_grant_disappeared(
    sim: SimulatedNetBird, provider: NetBirdProvider
) -> None:
    live = await grants(provider, 2)
    gone_sid, gone_policy = next(iter(live.items()))
    sim.account.delete_policy(gone_policy)
    launching = new_session_id()  # active, no grant recorded yet

    result = await reconcile(provider, {*live, launching}, {**live, launching: None})

    assert result.lost == (gone_sid,)
    assert result.deleted == ()


async def test_still_active_spares_a_session_launched_meanwhile(
    sim: SimulatedNetBird, provider: NetBirdProvider
) -> None:
    fresh = await grants(provider, 1)  # launched after the caller read its active set
    asked: list[Collection[str]] = []

    async def still_active(candidates: Collection[str]) -> Collection[str]:
        asked.append(candidates)
        return set(candidates) & set(fresh)

    result = await reconcile(provider, set(), {}, still_active=still_active)

    assert asked == [set(fresh)]
    assert result.deleted == ()
    assert len(sim.policies()) == 1


async def test_two_replicas_at_once_end_with_exactly_the_live_policies(
    sim: SimulatedNetBird, settings: NetBirdSettings
) -> None:
    replica_a, replica_b = NetBirdProvider(settings), NetBirdProvider(settings)
    try:
        live = await grants(replica_a, 3)
        ended = await grants(replica_b, 6)

        results = await asyncio.gather(
            reconcile(replica_a, set(live), live), reconcile(replica_b, set(live), live)
        )
    finally:
        await replica_a.aclose()
        await replica_b.aclose()

    assert {p["id"] for p in sim.policies()} == set(live.values())
    for result in results:  # each replica deleted or found gone every leftover
        assert {g.grant_id for g in result.deleted} == set(ended.values())
        assert result.failed == ()
    deletes = [r for r in sim.requests if r.method == "DELETE"]
    assert len(deletes) == 2 * len(ended)
    assert [r.status for r in deletes].count(200) == len(ended)
    assert {r.status for r in deletes} <= {200, 404}


async def test_a_failing_revoke_is_reported_and_retried_next_pass(
    sim: SimulatedNetBird, provider: NetBirdProvider
) -> None:
    ended = await grants(provider, 1)
    sim.inject(FaultKind.ERROR, times=None, method="DELETE")

    first = await reconcile(provider, set(), {})
    sim.faults.clear()
    second = await reconcile(provider, set(), {})

    assert [g.grant_id for g in first.failed] == list(ended.values())
    assert [g.grant_id for g in second.deleted] == list(ended.values())
    assert sim.policies() == []
