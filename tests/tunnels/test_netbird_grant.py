"""Grant and revoke against the simulated NetBird: the policy made, the address returned."""

from __future__ import annotations

import asyncio

import pytest

from tests.tunnels.conftest import WORKSPACE_IP, new_session_id, provider_with
from tunnels.base import Target, TunnelConfigError, TunnelRejected, TunnelStatus, TunnelUnavailable
from tunnels.netbird.provider import NetBirdProvider
from tunnels.netbird.settings import NetBirdSettings
from tunnels.simulated.server import SimulatedNetBird


def target(peer: str | None = "ws-linux", port: int = 3389, probe: bool = False) -> Target:
    return Target("ws-linux-desktop", "10.0.0.1", port, peer=peer, probe=probe)


async def test_grant_creates_exactly_the_documented_policy(
    sim: SimulatedNetBird, provider: NetBirdProvider
) -> None:
    sid = new_session_id()

    grant = await provider.grant(sid, target())

    posts = [r for r in sim.requests if r.method == "POST"]
    assert [r.path for r in posts] == ["/api/policies"]
    assert posts[0].body == {
        "name": f"broker:{sid}",
        "description": sid,
        "enabled": True,
        "rules": [
            {
                "name": f"broker:{sid}",
                "enabled": True,
                "action": "accept",
                "bidirectional": False,
                "protocol": "tcp",
                "ports": ["3389"],
                "sources": [sim.group_id("gateways")],
                "destinationResource": {"id": sim.peer_id("ws-linux"), "type": "peer"},
            }
        ],
    }
    [stored] = sim.policies()
    assert stored["id"] == grant.grant_id
    assert [g["name"] for g in stored["rules"][0]["sources"]] == ["gateways"]
    assert grant.address == WORKSPACE_IP
    assert grant.status is TunnelStatus.ENCRYPTED


async def test_revoke_deletes_the_policy(sim: SimulatedNetBird, provider: NetBirdProvider) -> None:
    sid = new_session_id()
    grant = await provider.grant(sid, target())

    await provider.revoke(sid, grant.grant_id)

    assert sim.policies() == []
    assert sim.requests[-1].method == "DELETE"
    assert sim.requests[-1].path == f"/api/policies/{grant.grant_id}"


async def test_revoke_of_a_policy_already_gone_is_done(
    sim: SimulatedNetBird, provider: NetBirdProvider
) -> None:
    await provider.revoke(new_session_id(), "ch8i4ug6lnn4g9hqv7m0")

    assert sim.requests[-1].status == 404


async def test_revoke_without_grant_id_finds_the_policy_by_name(
    sim: SimulatedNetBird, provider: NetBirdProvider
) -> None:
    sid, other = new_session_id(), new_session_id()
    await provider.grant(sid, target())
    kept = await provider.grant(other, target())

    await provider.revoke(sid, None)

    assert [p["id"] for p in sim.policies()] == [kept.grant_id]


async def test_peer_by_id(sim: SimulatedNetBird, provider: NetBirdProvider) -> None:
    grant = await provider.grant(new_session_id(), target(peer=sim.peer_id("ws-linux-2")))

    assert grant.address == "127.64.0.11"


async def test_peer_by_name_takes_the_exact_match_of_a_substring_search(
    provider: NetBirdProvider,
) -> None:
    # "ws-linux" is a substring of "ws-linux-2": NetBird returns both.
    grant = await provider.grant(new_session_id(), target(peer="ws-linux"))

    assert grant.address == WORKSPACE_IP


async def test_unknown_peer_is_a_config_error_naming_it(
    sim: SimulatedNetBird, provider: NetBirdProvider
) -> None:
    with pytest.raises(TunnelConfigError, match="no peer with id or name 'ws-nowhere'") as info:
        await provider.grant(new_session_id(), target(peer="ws-nowhere"))

    assert "ws-linux-desktop" in info.value.message
    assert sim.policies() == []


async def test_ambiguous_peer_name_is_refused(
    sim: SimulatedNetBird, provider: NetBirdProvider
) -> None:
    with pytest.raises(TunnelConfigError, match="2 NetBird peers are named 'twin'"):
        await provider.grant(new_session_id(), target(peer="twin"))

    assert sim.policies() == []


async def test_target_without_peer_is_a_config_error(provider: NetBirdProvider) -> None:
    with pytest.raises(TunnelConfigError, match="names no NetBird peer"):
        await provider.grant(new_session_id(), target(peer=None))


async def test_disconnected_peer_is_pending(provider: NetBirdProvider) -> None:
    grant = await provider.grant(new_session_id(), target(peer="ws-offline"))

    assert grant.status is TunnelStatus.PENDING


async def test_prefer_dns_returns_the_dns_label(settings: NetBirdSettings) -> None:
    async with provider_with(settings, prefer_dns=True) as netbird:
        grant = await netbird.grant(new_session_id(), target())

    assert grant.address == "ws-linux.netbird.selfhosted"


async def test_session_id_must_be_a_uuid(provider: NetBirdProvider) -> None:
    with pytest.raises(ValueError, match="UUID"):
        await provider.grant("not-a-session", target())


async def test_missing_gateway_group_is_a_config_error(
    sim: SimulatedNetBird, settings: NetBirdSettings
) -> None:
    async with provider_with(settings, gateway_group="no-such-group") as netbird:
        with pytest.raises(TunnelConfigError, match="no group named 'no-such-group'"):
            await netbird.grant(new_session_id(), target())

    assert sim.policies() == []


async def test_gateway_group_id_is_looked_up_once(
    sim: SimulatedNetBird, provider: NetBirdProvider
) -> None:
    for _ in range(3):
        await provider.grant(new_session_id(), target())

    group_lookups = [r for r in sim.requests if r.path == "/api/groups"]
    assert len(group_lookups) == 1
    assert group_lookups[0].query == {"name": "gateways"}


async def test_dropped_gateway_group_is_detected_and_the_policy_removed(
    sim: SimulatedNetBird, provider: NetBirdProvider
) -> None:
    await provider.gateway_group_id()  # cached now
    sim.account.delete_group(sim.group_id("gateways"))  # NetBird will drop the stale id

    with pytest.raises(TunnelRejected, match="dropped the gateway group 'gateways'"):
        await provider.grant(new_session_id(), target())

    assert sim.policies() == []


async def test_probe_success(sim: SimulatedNetBird, provider: NetBirdProvider) -> None:
    accepted = asyncio.Event()

    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        writer.close()

    server = await asyncio.start_server(on_connect, WORKSPACE_IP, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        grant = await provider.grant(new_session_id(), target(port=port, probe=True))
        await accepted.wait()
    finally:
        server.close()
        await server.wait_closed()

    assert (grant.address, grant.port) == (WORKSPACE_IP, port)
    assert len(sim.policies()) == 1


async def test_probe_failure_revokes_and_says_why(
    sim: SimulatedNetBird, provider: NetBirdProvider
) -> None:
    # Nothing listens on ws-linux-2's address: every connect is refused.
    with pytest.raises(
        TunnelUnavailable, match=r"did not accept a TCP connection on 127\.64\.0\.11:"
    ):
        await provider.grant(new_session_id(), target(peer="ws-linux-2", port=5901, probe=True))

    assert sim.policies() == []
