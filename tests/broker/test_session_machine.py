"""The session state machine on a real database, without HTTP: conditional
updates decide every race (one winner, one audit row), a failed grant leaves
nothing active and nothing open, and a failed revoke is retried from the
database, also by a broker started afresh on the same file.

The tunnel provider is real: `DirectProvider`, or the NetBird provider
against the simulated NetBird Management API, whose fault plan makes the
failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from broker.core.audit import Action, Actor
from broker.core.errors import Conflict, Unavailable
from broker.core.events import SessionEnded
from broker.core.models import EndReason
from broker.core.reconciler import reconcile_once
from broker.core.sessions import Launched
from tests.broker.machine import ALICE, StartMachine, user
from tunnels.direct import DirectProvider
from tunnels.netbird.provider import NetBirdProvider
from tunnels.netbird.settings import NetBirdSettings
from tunnels.simulated.faults import FaultKind
from tunnels.simulated.seed import Seed, SeedPeer, SeedToken
from tunnels.simulated.server import RecordedRequest, SimulatedNetBird

pytestmark = pytest.mark.db

TOKEN = "nbp_" + "sessionMachine".ljust(36, "0")


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedNetBird]:
    seed = Seed(
        tokens=(SeedToken(TOKEN, role="network_admin", name="broker"),),
        gateways=(SeedPeer("gateway-1", "127.64.0.2"),),
        workspaces=(
            SeedPeer("ws-linux-peer", "127.64.0.10"),
            SeedPeer("ws-rdp-peer", "127.64.0.11"),
        ),
    )
    async with SimulatedNetBird(seed) as server:
        yield server
        assert server.invalid_requests() == []


@pytest.fixture
async def netbird(sim: SimulatedNetBird) -> AsyncIterator[Callable[[], NetBirdProvider]]:
    """NetBird providers talking to ``sim`` (one per broker start), with short
    pauses between retries; all closed after the test."""
    providers: list[NetBirdProvider] = []

    def make() -> NetBirdProvider:
        provider = NetBirdProvider(
            NetBirdSettings(
                base_url=sim.url,
                token=TOKEN,
                timeout_seconds=5.0,
                max_retries=2,
                max_retry_seconds=3.0,
                backoff_base=0.01,
                backoff_max=0.05,
            )
        )
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        await provider.aclose()


def policy_created(r: RecordedRequest) -> bool:
    return r.method == "POST" and r.path == "/api/policies"


# -- races ------------------------------------------------------------------------


async def test_two_concurrent_ends_of_one_session_one_wins_with_one_audit_row(
    start_machine: StartMachine,
) -> None:
    m = await start_machine(DirectProvider())
    sid = (await m.launch("ws-linux")).session.id

    results = await asyncio.gather(
        m.sessions.end(sid, EndReason.USER_DISCONNECT, Actor("alice", "alice@example.com")),
        m.sessions.end(sid, EndReason.ADMIN_TERMINATE, Actor("root", "root@example.com")),
    )

    (winner,) = [r for r in results if r is not None]
    row = await m.row(sid)
    assert (row.status, row.end_reason) == (winner.status, winner.end_reason)
    endings = [
        e.action
        for e in await m.audit(session_id=sid)
        if e.action in (Action.DISCONNECT_SESSION, Action.END_SESSION)
    ]
    assert len(endings) == 1
    assert m.ended == [SessionEnded(sid, str(winner.end_reason))]


async def test_disconnect_racing_a_terminate_is_a_conflict_for_the_loser(
    start_machine: StartMachine,
) -> None:
    m = await start_machine(DirectProvider())
    sid = (await m.launch("ws-linux")).session.id

    results = await asyncio.gather(
        m.sessions.disconnect("alice", sid, Actor("alice", "alice@example.com")),
        m.sessions.admin_terminate(sid, Actor("root", "root@example.com")),
        return_exceptions=True,
    )

    assert sorted(type(r).__name__ for r in results) == ["Conflict", "Session"]
    (conflict,) = [r for r in results if isinstance(r, Conflict)]
    assert conflict.detail == "Session has already ended"


async def test_concurrent_launches_of_one_workspace_leave_one_active_session(
    start_machine: StartMachine,
) -> None:
    m = await start_machine(DirectProvider())
    users = [user(f"user-{i}") for i in range(6)]

    results = await asyncio.gather(
        *(m.launch("ws-linux", who) for who in users), return_exceptions=True
    )

    (launched,) = [r for r in results if isinstance(r, Launched)]
    refused = [r for r in results if not isinstance(r, Launched)]
    assert launched.created
    assert len(refused) == 5
    assert all(isinstance(r, Conflict) for r in refused), refused
    active = await m.sessions.queries.query(workspace_id="ws-linux", status="active")
    assert [s.id for s in active] == [launched.session.id]
    assert len(await m.audit(action=Action.LAUNCH_WORKSPACE)) == 1


async def test_concurrent_launches_by_one_user_share_one_session(
    start_machine: StartMachine,
) -> None:
    m = await start_machine(DirectProvider())

    results = await asyncio.gather(*(m.launch("ws-rdp") for _ in range(4)))

    assert sorted(r.created for r in results) == [False, False, False, True]
    assert len({r.session.id for r in results}) == 1
    assert len({r.viewer_token for r in results}) == 4
    active = await m.sessions.queries.query(workspace_id="ws-rdp", status="active")
    assert len(active) == 1


# -- launch failure -----------------------------------------------------------------


async def test_failed_grant_leaves_no_active_session_and_no_open_grant(
    start_machine: StartMachine, netbird: Callable[[], NetBirdProvider], sim: SimulatedNetBird
) -> None:
    m = await start_machine(netbird())
    fault = sim.inject(FaultKind.ERROR, times=None, method="POST", path="/api/policies")

    with pytest.raises(Unavailable) as refused:
        await m.launch("ws-linux")

    assert refused.value.detail.startswith("Could not open the network path to the workspace")
    assert fault.hits >= 1
    assert await m.sessions.queries.active_in_workspace("ws-linux") is None
    (row,) = await m.sessions.queries.query(workspace_id="ws-linux")
    assert (row.status, row.end_reason, row.revoked) == ("terminated", "launch_failed", True)
    (failed,) = await m.audit(session_id=row.id, action=Action.LAUNCH_FAILED)
    assert failed.details["error"]
    assert sim.policies() == []
    assert await m.sessions.queries.pending_revokes() == []
    assert m.ended == [SessionEnded(row.id, "launch_failed")]

    sim.faults.clear()
    again = await m.launch("ws-linux")
    assert again.created and again.session.tunnel_status == "encrypted"


async def test_session_ended_while_its_grant_is_made_gives_the_grant_back(
    start_machine: StartMachine, netbird: Callable[[], NetBirdProvider], sim: SimulatedNetBird
) -> None:
    m = await start_machine(netbird())
    # NetBird takes a while to make the policy; the session ends meanwhile.
    sim.inject(FaultKind.SLOW, method="POST", path="/api/policies", delay=1.0)
    launch = asyncio.create_task(m.launch("ws-linux"))
    async with asyncio.timeout(5):
        await sim.wait_for_request(policy_created)
    current = await m.sessions.queries.active_in_workspace("ws-linux")
    assert current is not None
    assert await m.sessions.end(current.id, EndReason.ADMIN_TERMINATE, Actor.system())

    with pytest.raises(Conflict, match="Session ended during launch"):
        await launch

    row = await m.row(current.id)
    assert (row.status, row.end_reason) == ("terminated", "admin_terminate")
    assert sim.policies() == []
    assert row.revoked and row.tunnel_status == "revoked"


# -- revoke retry ---------------------------------------------------------------------


async def test_failed_revoke_is_retried_from_the_database_after_a_restart(
    start_machine: StartMachine, netbird: Callable[[], NetBirdProvider], sim: SimulatedNetBird
) -> None:
    first = await start_machine(netbird())
    sid = (await first.launch("ws-linux")).session.id
    (policy,) = sim.policies()
    sim.inject(FaultKind.DROP, times=None, method="DELETE")

    assert await first.sessions.end(sid, EndReason.USER_DISCONNECT, Actor.system())

    row = await first.row(sid)
    assert (row.status, row.revoked) == ("disconnected", False)
    assert sim.policies() == [policy]  # the network path is still open
    assert await first.sessions.queries.pending_revokes() == [sid]
    assert await first.sessions.retry_revokes() == 1  # NetBird still unreachable
    outcomes = [e.details["outcome"] for e in await first.audit(action=Action.REVOKE_TUNNEL)]
    assert outcomes == ["failed", "failed"]
    await first.aclose()

    # A broker started afresh on the same database finishes the job.
    second = await start_machine(netbird())
    sim.faults.clear()
    assert await second.sessions.retry_revokes() == 0

    assert sim.policies() == []
    row = await second.row(sid)
    assert (row.status, row.revoked, row.tunnel_status) == ("disconnected", True, "revoked")
    assert await second.sessions.queries.pending_revokes() == []
    revokes = await second.audit(action=Action.REVOKE_TUNNEL)
    assert [e.details["outcome"] for e in revokes] == ["failed", "failed", "revoked"]
    assert revokes[-1].details["grant_id"] == policy["id"]


# -- ended sessions never say "pending"; every revoke is audited -------------------


async def test_stop_racing_a_launch_ends_revoked_and_the_grant_removal_is_audited(
    start_machine: StartMachine, netbird: Callable[[], NetBirdProvider], sim: SimulatedNetBird
) -> None:
    m = await start_machine(netbird())
    sim.inject(FaultKind.SLOW, method="POST", path="/api/policies", delay=0.3)
    launch = asyncio.create_task(m.launch("ws-linux"))
    async with asyncio.timeout(5):
        await sim.wait_for_request(policy_created)
    current = await m.sessions.queries.active_in_workspace("ws-linux")
    assert current is not None
    # The stop's revoke lists the session's policies (none is recorded yet) and
    # gets its answer only after the launch recorded its policy and started
    # deleting it; the launch's own delete is answered last.
    sim.inject(FaultKind.SLOW, method="GET", path="/api/policies", delay=1.2)
    sim.inject(FaultKind.SLOW, method="DELETE", path="/api/policies/*", delay=2.4)
    stop = asyncio.create_task(
        m.sessions.stop_workspace(ALICE, m.workspace("ws-linux"), Actor.system())
    )
    with pytest.raises(Conflict, match="Session ended during launch"):
        await launch
    await stop

    row = await m.row(current.id)
    assert sim.policies() == []
    assert row.grant_id is not None
    assert (row.status, row.tunnel_status, row.revoked) == ("terminated", "revoked", True)
    revokes = await m.audit(session_id=row.id, action=Action.REVOKE_TUNNEL)
    assert [(e.details["grant_id"], e.details["outcome"]) for e in revokes] == [
        (row.grant_id, "revoked")
    ]


async def test_launch_cut_short_by_a_crash_ends_failed_and_its_revokes_are_audited(
    start_machine: StartMachine, netbird: Callable[[], NetBirdProvider], sim: SimulatedNetBird
) -> None:
    first = await start_machine(netbird())
    sim.inject(FaultKind.HANG, method="POST", path="/api/policies")
    launch = asyncio.create_task(first.launch("ws-linux"))
    async with asyncio.timeout(5):
        await sim.wait_for_request(policy_created)
    (sid,) = await first.sessions.queries.active_grants()
    # The first broker is as good as dead; the reconciler of a broker started
    # on the same database finds the launch that never finished, while
    # NetBird fails.
    second = await start_machine(netbird())
    sim.inject(FaultKind.ERROR, times=None, method="GET", path="/api/policies", status=503)
    passed = await reconcile_once(second.sessions, netbird(), launch_timeout=0)
    assert passed.interrupted == 1

    row = await second.row(sid)
    assert (row.status, row.end_reason, row.revoked) == ("terminated", "launch_failed", False)
    assert row.tunnel_status == "failed"  # not "pending": the grant never came
    sim.faults.clear()
    assert await second.sessions.retry_revokes() == 0

    row = await second.row(sid)
    assert (row.tunnel_status, row.revoked) == ("failed", True)
    (failed,) = await second.audit(session_id=sid, action=Action.LAUNCH_FAILED)
    assert failed.details["error"] == "launch interrupted"
    revokes = await second.audit(session_id=sid, action=Action.REVOKE_TUNNEL)
    assert [e.details["outcome"] for e in revokes] == ["failed", "revoked"]
    launch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await launch


async def test_failed_revoke_shows_failed_and_the_reconcilers_removal_is_audited(
    start_machine: StartMachine, netbird: Callable[[], NetBirdProvider], sim: SimulatedNetBird
) -> None:
    m = await start_machine(netbird())
    sid = (await m.launch("ws-linux")).session.id
    (policy,) = sim.policies()
    sim.inject(FaultKind.DROP, times=None, method="DELETE")
    assert await m.sessions.end(sid, EndReason.USER_DISCONNECT, Actor.system())
    row = await m.row(sid)
    assert (row.tunnel_status, row.revoked) == ("failed", False)  # the path is still open

    sim.faults.clear()
    passed = await reconcile_once(m.sessions, netbird(), launch_timeout=120)
    assert passed.deleted == 1 and sim.policies() == []
    assert await m.sessions.retry_revokes() == 0

    row = await m.row(sid)
    assert (row.status, row.tunnel_status, row.revoked) == ("disconnected", "revoked", True)
    revokes = await m.audit(session_id=sid, action=Action.REVOKE_TUNNEL)
    assert [e.details["outcome"] for e in revokes] == ["failed", "revoked", "revoked"]
    by_reconciler = {"grant_id": policy["id"], "outcome": "revoked", "by": "reconciler"}
    assert revokes[1].details == by_reconciler


async def test_ended_direct_sessions_keep_direct_with_nothing_to_audit(
    start_machine: StartMachine,
) -> None:
    m = await start_machine(DirectProvider())
    sid = (await m.launch("ws-linux")).session.id
    assert await m.sessions.end(sid, EndReason.USER_DISCONNECT, Actor.system())
    row = await m.row(sid)
    assert (row.tunnel_status, row.revoked) == ("direct", True)
    assert await m.audit(session_id=sid, action=Action.REVOKE_TUNNEL) == []
