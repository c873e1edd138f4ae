"""NetBird failing: errors translated, retries bounded, no policy left behind or made twice."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import pytest

from tests.tunnels.conftest import NETWORK_ADMIN, USER, new_session_id, provider_with
from tunnels.base import Target, TunnelConfigError, TunnelUnavailable
from tunnels.netbird.provider import NetBirdProvider
from tunnels.netbird.settings import NetBirdSettings
from tunnels.simulated.faults import FaultKind
from tunnels.simulated.server import SimulatedNetBird

TARGET = Target("ws-linux-desktop", "10.0.0.1", 3389, peer="ws-linux")


async def test_bad_token_is_a_config_error_without_the_token(
    sim: SimulatedNetBird, settings: NetBirdSettings, caplog: pytest.LogCaptureFixture
) -> None:
    bad = "nbp_" + "x" * 36
    caplog.set_level(logging.DEBUG)
    async with provider_with(settings, token=bad) as netbird:
        with pytest.raises(TunnelConfigError) as info:
            await netbird.grant(new_session_id(), TARGET)

    assert info.value.message.startswith("NetBird rejected the service-user token")
    assert bad not in str(info.value)
    assert bad not in caplog.text
    assert sim.requests[-1].status == 401


async def test_read_only_role_is_a_config_error(
    sim: SimulatedNetBird, settings: NetBirdSettings
) -> None:
    async with provider_with(settings, token=USER) as netbird:
        with pytest.raises(TunnelConfigError, match="role") as info:
            await netbird.grant(new_session_id(), TARGET)

    assert "HTTP 403" in info.value.message
    assert sim.policies() == []


async def test_token_stays_out_of_settings_repr(settings: NetBirdSettings) -> None:
    assert NETWORK_ADMIN not in repr(settings)
    assert NETWORK_ADMIN not in str(settings)


async def test_500s_on_create_end_unavailable_and_leave_nothing(
    sim: SimulatedNetBird, provider: NetBirdProvider
) -> None:
    fault = sim.inject(FaultKind.ERROR, times=None, method="POST", path="/api/policies")

    with pytest.raises(TunnelUnavailable, match="NetBird is unavailable") as info:
        await provider.grant(new_session_id(), TARGET)

    assert "HTTP 500" in info.value.message
    assert fault.hits >= 1
    assert sim.policies() == []


async def test_create_timing_out_ends_unavailable_and_leaves_nothing(
    sim: SimulatedNetBird, settings: NetBirdSettings
) -> None:
    sim.inject(FaultKind.HANG, times=None, method="POST", path="/api/policies")

    async with provider_with(settings, timeout_seconds=0.1, max_retries=2) as netbird:
        with pytest.raises(TunnelUnavailable, match="no answer within"):
            await netbird.grant(new_session_id(), TARGET)

    assert sim.policies() == []


async def test_transient_500_is_retried(sim: SimulatedNetBird, provider: NetBirdProvider) -> None:
    sim.inject(FaultKind.ERROR, times=2, path="/api/peers*")

    grant = await provider.grant(new_session_id(), TARGET)

    assert grant.address == "127.64.0.10"


@pytest.mark.parametrize(
    "kind", [FaultKind.COMMIT_THEN_ERROR, FaultKind.COMMIT_THEN_DROP, FaultKind.COMMIT_THEN_HANG]
)
async def test_create_applied_but_unanswered_is_found_not_made_twice(
    sim: SimulatedNetBird, settings: NetBirdSettings, kind: FaultKind
) -> None:
    sid = new_session_id()
    sim.inject(kind, times=1, method="POST", path="/api/policies")

    async with provider_with(settings, timeout_seconds=0.2) as netbird:
        grant = await netbird.grant(sid, TARGET)

    [policy] = sim.policies()
    assert policy["id"] == grant.grant_id
    assert policy["name"] == f"broker:{sid}"
    assert [r.method for r in sim.requests if r.path == "/api/policies"] == ["POST", "GET"]


async def test_create_applied_then_unavailable_is_cleaned_up(
    sim: SimulatedNetBird, settings: NetBirdSettings
) -> None:
    # The create is applied, then every lookup fails: the grant gives up; the
    # best-effort clean-up (once the lookups answer again) removes the policy.
    sim.inject(FaultKind.COMMIT_THEN_ERROR, times=1, method="POST", path="/api/policies")
    lookups = sim.inject(FaultKind.ERROR, times=3, method="GET", path="/api/policies")

    async with provider_with(settings, max_retries=2) as netbird:
        with pytest.raises(TunnelUnavailable):
            await netbird.grant(new_session_id(), TARGET)

    assert lookups.hits == 3
    assert sim.policies() == []


async def test_429_storm_is_retried_within_bounds(
    sim: SimulatedNetBird, provider: NetBirdProvider
) -> None:
    storm = sim.inject(FaultKind.RATE_LIMIT, times=4)

    grant = await provider.grant(new_session_id(), TARGET)

    assert storm.hits == 4  # max_retries is 4: the fifth attempt got through
    assert grant.grant_id is not None
    assert len(sim.policies()) == 1


async def test_429_storm_gives_up_after_max_retries(
    sim: SimulatedNetBird, provider: NetBirdProvider
) -> None:
    storm = sim.inject(FaultKind.RATE_LIMIT, times=None)

    with pytest.raises(TunnelUnavailable, match="failed 5 times"):
        await provider.grant(new_session_id(), TARGET)

    assert storm.hits == 5


async def test_endless_429_gives_up_within_the_total_time_bound(
    sim: SimulatedNetBird, settings: NetBirdSettings
) -> None:
    storm = sim.inject(FaultKind.RATE_LIMIT, times=None)
    started = time.monotonic()

    async with provider_with(
        settings, max_retries=1000, max_retry_seconds=0.5, backoff_base=0.02, backoff_max=0.1
    ) as netbird:
        with pytest.raises(TunnelUnavailable, match="HTTP 429"):
            await netbird.grant(new_session_id(), TARGET)

    assert time.monotonic() - started < 1.5
    assert 3 < storm.hits < 1000


async def test_unreachable_netbird_is_unavailable(settings: NetBirdSettings) -> None:
    # A loopback port nothing listens on: every connect is refused.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()

    async with provider_with(settings, base_url=f"http://127.0.0.1:{port}") as netbird:
        with pytest.raises(TunnelUnavailable, match="cannot connect"):
            await netbird.revoke(new_session_id(), "ch8i4ug6lnn4g9hqv7m0")


async def test_revoke_retries_then_reports_unavailable(
    sim: SimulatedNetBird, provider: NetBirdProvider
) -> None:
    sid = new_session_id()
    grant = await provider.grant(sid, TARGET)
    sim.inject(FaultKind.DROP, times=None, method="DELETE")

    with pytest.raises(TunnelUnavailable):
        await provider.revoke(sid, grant.grant_id)

    sim.faults.clear()
    await provider.revoke(sid, grant.grant_id)
    assert sim.policies() == []


async def test_request_ids_are_logged(
    sim: SimulatedNetBird, provider: NetBirdProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tunnels.netbird")
    sim.inject(FaultKind.ERROR, times=1, method="POST")

    await provider.grant(new_session_id(), TARGET)

    answered = [r for r in caplog.records if "request id" in r.getMessage()]
    assert {r.levelno for r in answered} >= {logging.DEBUG, logging.WARNING}
    failed = next(r for r in answered if r.levelno == logging.WARNING)
    assert re.search(r"POST /api/policies -> 500 \(request id [0-9a-v]{20}\)", failed.getMessage())
    assert NETWORK_ADMIN not in caplog.text
