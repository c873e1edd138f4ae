"""The provider contract (`tunnels.base.TunnelProvider`), for every provider it applies to."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.tunnels.conftest import new_session_id
from tunnels.base import Grant, Target, TunnelProvider, TunnelStatus
from tunnels.direct import DirectProvider
from tunnels.netbird.provider import NetBirdProvider
from tunnels.netbird.settings import NetBirdSettings

TARGET = Target("ws-linux-desktop", "127.0.0.1", 3389, peer="ws-linux")
EXPECTED = {
    "direct": ("127.0.0.1", TunnelStatus.DIRECT, False),
    "netbird": ("127.64.0.10", TunnelStatus.ENCRYPTED, True),
}


@pytest.fixture(params=["direct", "netbird"])
async def any_provider(
    request: pytest.FixtureRequest, settings: NetBirdSettings
) -> AsyncIterator[TunnelProvider]:
    provider: TunnelProvider = (
        DirectProvider() if request.param == "direct" else NetBirdProvider(settings)
    )
    yield provider
    await provider.aclose()


def test_providers_implement_the_protocol(settings: NetBirdSettings) -> None:
    assert isinstance(DirectProvider(), TunnelProvider)
    assert isinstance(NetBirdProvider(settings), TunnelProvider)


async def test_grant_returns_where_to_connect(any_provider: TunnelProvider) -> None:
    sid = new_session_id()
    address, status, encrypts = EXPECTED[any_provider.name]

    grant = await any_provider.grant(sid, TARGET)

    assert isinstance(grant, Grant)
    assert (grant.session_id, grant.address, grant.port, grant.status) == (
        sid,
        address,
        3389,
        status,
    )
    assert any_provider.encrypts is encrypts


async def test_revoke_is_idempotent(any_provider: TunnelProvider) -> None:
    sid = new_session_id()
    grant = await any_provider.grant(sid, TARGET)

    await any_provider.revoke(sid, grant.grant_id)
    await any_provider.revoke(sid, grant.grant_id)
    await any_provider.revoke(sid, None)

    assert sid not in {g.session_id for g in await any_provider.list_grants()}


async def test_list_grants_shows_live_grants_only(any_provider: TunnelProvider) -> None:
    live, ended = new_session_id(), new_session_id()
    live_grant = await any_provider.grant(live, TARGET)
    ended_grant = await any_provider.grant(ended, TARGET)
    await any_provider.revoke(ended, ended_grant.grant_id)

    listed = {(g.session_id, g.grant_id) for g in await any_provider.list_grants()}

    assert (ended, ended_grant.grant_id) not in listed
    if live_grant.grant_id is not None:
        assert listed == {(live, live_grant.grant_id)}


async def test_health_is_ok(any_provider: TunnelProvider) -> None:
    health = await any_provider.health()

    assert health.ok
    assert health.checks
