"""Readiness checks and the admin helpers."""

from __future__ import annotations

import pytest

from tests.tunnels.conftest import ADMIN, NETWORK_ADMIN, USER, provider_with
from tunnels.base import Health, TunnelConfigError, TunnelUnavailable
from tunnels.netbird.provider import NetBirdProvider
from tunnels.netbird.settings import NetBirdSettings
from tunnels.simulated.faults import FaultKind
from tunnels.simulated.seed import Seed
from tunnels.simulated.server import SimulatedNetBird


def by_name(health: Health) -> dict[str, tuple[bool, str | None]]:
    return {c.name: (c.ok, c.warning) for c in health.checks}


async def test_healthy_account(provider: NetBirdProvider) -> None:
    health = await provider.health()

    assert by_name(health) == {
        "netbird_credentials": (True, None),
        "netbird_gateway_group": (True, None),
        "netbird_policies": (True, None),
    }


async def test_all_to_all_policy_is_a_warning_not_a_failure(
    seed: Seed, settings: NetBirdSettings
) -> None:
    async with SimulatedNetBird(Seed(tokens=seed.tokens, all_to_all=True)) as sim:
        async with provider_with(settings, base_url=sim.url) as netbird:
            health = await netbird.health()
        assert sim.invalid_requests() == []

    assert health.ok
    ok, warning = by_name(health)["netbird_policies"]
    assert ok and warning is not None
    assert "'Default' connects All to All" in warning


async def test_bad_token_fails_readiness(settings: NetBirdSettings) -> None:
    async with provider_with(settings, token="nbp_" + "y" * 36) as netbird:
        health = await netbird.health()

    assert not health.ok
    assert all(not c.ok for c in health.checks)
    assert all("rejected the service-user token" in c.detail for c in health.checks)


async def test_role_that_cannot_manage_policies_fails_readiness(
    settings: NetBirdSettings,
) -> None:
    async with provider_with(settings, token=USER) as netbird:
        health = await netbird.health()

    ok, warning = by_name(health)["netbird_credentials"]
    assert not ok
    assert warning is None
    assert "cannot manage policies" in health.checks[0].detail


async def test_missing_gateway_group_fails_readiness(settings: NetBirdSettings) -> None:
    async with provider_with(settings, gateway_group="gw-typo") as netbird:
        health = await netbird.health()

    assert by_name(health)["netbird_gateway_group"] == (False, None)


async def test_each_check_is_bounded(sim: SimulatedNetBird, settings: NetBirdSettings) -> None:
    sim.inject(FaultKind.HANG, times=None, path="/api/users/current")

    # Generous for the check that does answer (two busy cores); the hanging one
    # is cut off at exactly this bound.
    async with provider_with(settings, check_timeout=2.0, timeout_seconds=5.0) as netbird:
        health = await netbird.health()

    assert not health.ok
    assert health.checks[0].detail == "no answer from NetBird within 2s"
    assert health.checks[1].ok


async def test_describe_prints_what_readiness_sees(provider: NetBirdProvider) -> None:
    text = await provider.describe()

    assert text.splitlines()[0].endswith("gateway group 'gateways': ready")
    assert "[ok] netbird_credentials: token of 'broker', role 'network_admin'" in text
    assert NETWORK_ADMIN not in text
    assert (await provider.check()).ok


async def test_create_setup_key_returns_the_plain_one_off_key(
    sim: SimulatedNetBird, settings: NetBirdSettings
) -> None:
    async with provider_with(settings, token=ADMIN) as netbird:
        key = await netbird.create_setup_key(
            "gateway-2", ["gateways", sim.group_id("All")], ephemeral=True, expires_in=3600
        )

    [stored] = sim.account.setup_keys.values()
    assert key == stored.key
    post = next(r for r in sim.requests if r.method == "POST")
    assert post.body == {
        "name": "gateway-2",
        "type": "one-off",
        "expires_in": 3600,
        "auto_groups": [sim.group_id("gateways"), sim.group_id("All")],
        "usage_limit": 1,
        "ephemeral": True,
    }


async def test_setup_keys_need_the_admin_role(provider: NetBirdProvider) -> None:
    with pytest.raises(TunnelConfigError, match="HTTP 403"):
        await provider.create_setup_key("k", ["gateways"], ephemeral=False, expires_in=0)


async def test_setup_key_for_an_unknown_group_is_refused(
    sim: SimulatedNetBird, settings: NetBirdSettings
) -> None:
    async with provider_with(settings, token=ADMIN) as netbird:
        with pytest.raises(TunnelConfigError, match="no group with id or name 'nope'"):
            await netbird.create_setup_key("k", ["nope"], ephemeral=False, expires_in=0)

    assert sim.account.setup_keys == {}


async def test_lost_setup_key_create_is_not_retried(
    sim: SimulatedNetBird, settings: NetBirdSettings
) -> None:
    sim.inject(FaultKind.COMMIT_THEN_ERROR, method="POST", path="/api/setup-keys")

    async with provider_with(settings, token=ADMIN) as netbird:
        with pytest.raises(TunnelUnavailable, match="may or may not have been applied"):
            await netbird.create_setup_key("k", ["gateways"], ephemeral=False, expires_in=0)

    assert len(sim.account.setup_keys) == 1
    assert [r.method for r in sim.requests].count("POST") == 1


async def test_ensure_group_creates_once(sim: SimulatedNetBird, provider: NetBirdProvider) -> None:
    first = await provider.ensure_group("gateways-eu")
    again = await provider.ensure_group("gateways-eu")

    assert first == again == sim.group_id("gateways-eu")
    assert [r.method for r in sim.requests].count("POST") == 1


async def test_ensure_group_survives_a_lost_create(
    sim: SimulatedNetBird, provider: NetBirdProvider
) -> None:
    sim.inject(FaultKind.COMMIT_THEN_DROP, method="POST", path="/api/groups")

    group_id = await provider.ensure_group("gateways-us")

    assert group_id == sim.group_id("gateways-us")
    assert [g.name for g in sim.account.groups.values()].count("gateways-us") == 1
