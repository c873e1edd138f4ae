"""Fixtures: a simulated NetBird on loopback and a NetBird provider talking to it."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from tunnels.netbird.provider import NetBirdProvider
from tunnels.netbird.settings import NetBirdSettings
from tunnels.simulated.seed import Seed, SeedPeer, SeedToken
from tunnels.simulated.server import SimulatedNetBird


def pat(label: str) -> str:
    """A token shaped like a NetBird PAT: ``nbp_`` and 36 characters."""
    return "nbp_" + label.ljust(36, "0")


NETWORK_ADMIN = pat("networkAdmin")
ADMIN = pat("admin")
USER = pat("user")
WORKSPACE_IP = "127.64.0.10"


def new_session_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def seed() -> Seed:
    return Seed(
        tokens=(
            SeedToken(NETWORK_ADMIN, role="network_admin", name="broker"),
            SeedToken(ADMIN, role="admin", name="ops"),
            SeedToken(USER, role="user", name="alice", service_user=False),
        ),
        gateways=(SeedPeer("gateway-1", "127.64.0.2"),),
        workspaces=(
            SeedPeer("ws-linux", WORKSPACE_IP),
            SeedPeer("ws-linux-2", "127.64.0.11"),
            SeedPeer("ws-offline", "127.64.0.12", connected=False),
            SeedPeer("twin", "127.64.0.13"),
            SeedPeer("twin", "127.64.0.14"),
        ),
    )


@pytest.fixture
async def sim(seed: Seed) -> AsyncIterator[SimulatedNetBird]:
    """A started simulator; at the end, every request it got must have met the spec."""
    async with SimulatedNetBird(seed) as server:
        yield server
        assert server.invalid_requests() == []


@pytest.fixture
def settings(sim: SimulatedNetBird) -> NetBirdSettings:
    """Short timeouts and pauses, so failure tests take well under a second each."""
    return NetBirdSettings(
        base_url=sim.url,
        token=NETWORK_ADMIN,
        timeout_seconds=0.5,
        max_retries=4,
        max_retry_seconds=3.0,
        backoff_base=0.01,
        backoff_max=0.05,
        probe_attempts=3,
        probe_interval=0.01,
        probe_connect_timeout=0.2,
        check_timeout=2.0,
    )


@pytest.fixture
async def provider(settings: NetBirdSettings) -> AsyncIterator[NetBirdProvider]:
    netbird = NetBirdProvider(settings)
    yield netbird
    await netbird.aclose()


@contextlib.asynccontextmanager
async def provider_with(
    settings: NetBirdSettings, **changes: Any
) -> AsyncIterator[NetBirdProvider]:
    """A provider with some settings changed."""
    netbird = NetBirdProvider(replace(settings, **changes))
    try:
        yield netbird
    finally:
        await netbird.aclose()
