"""The simulator's failure knobs do what they say, for the calls they name."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.tunnels.conftest import NETWORK_ADMIN
from tunnels.simulated.faults import Fault, FaultKind, FaultPlan
from tunnels.simulated.seed import Seed
from tunnels.simulated.server import SimulatedNetBird

HEADERS = {"Authorization": f"Token {NETWORK_ADMIN}"}


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        yield session


async def status_of(session: aiohttp.ClientSession, method: str, url: str) -> int:
    async with session.request(method, url, json={"name": "g"} if method == "POST" else None) as r:
        await r.read()
        return r.status


async def test_error_and_rate_limit_hit_the_next_n_matching_calls(
    sim: SimulatedNetBird, client: aiohttp.ClientSession
) -> None:
    sim.inject(FaultKind.ERROR, times=2, method="GET", path="/api/peers*", status=503)
    sim.inject(FaultKind.RATE_LIMIT, times=1, path="/api/groups")

    statuses = [await status_of(client, "GET", sim.url + "/api/peers") for _ in range(3)]
    groups = [await status_of(client, "GET", sim.url + "/api/groups") for _ in range(2)]

    assert statuses == [503, 503, 200]
    assert groups == [429, 200]


async def test_slow_answers_after_the_delay(
    sim: SimulatedNetBird, client: aiohttp.ClientSession
) -> None:
    sim.inject(FaultKind.SLOW, delay=0.2)
    started = time.monotonic()

    assert await status_of(client, "GET", sim.url + "/api/policies") == 200
    assert time.monotonic() - started >= 0.2


async def test_hang_lasts_until_the_client_gives_up(
    sim: SimulatedNetBird, client: aiohttp.ClientSession
) -> None:
    sim.inject(FaultKind.HANG)

    with pytest.raises(TimeoutError):
        async with client.get(sim.url + "/api/policies", timeout=aiohttp.ClientTimeout(0.2)):
            pass

    assert sim.requests[-1].status is None


async def test_drop_closes_without_an_answer(
    sim: SimulatedNetBird, client: aiohttp.ClientSession
) -> None:
    sim.inject(FaultKind.DROP, method="POST")

    with pytest.raises(aiohttp.ServerDisconnectedError):
        await status_of(client, "POST", sim.url + "/api/groups")

    assert "g" not in {g.name for g in sim.account.groups.values()}


async def test_commit_then_error_does_the_work_then_fails(
    sim: SimulatedNetBird, client: aiohttp.ClientSession
) -> None:
    sim.inject(FaultKind.COMMIT_THEN_ERROR, method="POST")

    assert await status_of(client, "POST", sim.url + "/api/groups") == 500
    assert sim.group_id("g")


def test_rate_is_drawn_from_the_seeded_rng() -> None:
    def pattern(seed: int) -> list[bool]:
        plan = FaultPlan(random.Random(seed))
        plan.add(Fault(FaultKind.ERROR, times=None, rate=0.3))
        return [plan.take("GET", "/api/peers") is not None for _ in range(200)]

    assert pattern(7) == pattern(7)
    assert pattern(7) != pattern(8)
    assert 30 < sum(pattern(7)) < 90


def test_rate_must_be_a_probability() -> None:
    with pytest.raises(ValueError, match="probability"):
        FaultPlan(random.Random(0)).add(Fault(FaultKind.ERROR, rate=1.5))


async def test_closing_ends_hanging_requests(seed: Seed) -> None:
    sim = SimulatedNetBird(seed)
    await sim.start()
    sim.inject(FaultKind.HANG, times=None)
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        hanging = asyncio.create_task(status_of(session, "GET", sim.url + "/api/policies"))
        async with asyncio.timeout(5):
            await sim.wait_for_request(lambda r: r.path == "/api/policies")

        await sim.aclose()

        with pytest.raises(aiohttp.ClientConnectionError):  # reset, then refused on retry
            await hanging


async def test_starting_twice_is_refused(sim: SimulatedNetBird) -> None:
    with pytest.raises(RuntimeError, match="already started"):
        await sim.start()


async def test_only_loopback_is_served(seed: Seed) -> None:
    with pytest.raises(ValueError, match="loopback"):
        await SimulatedNetBird(seed).start(host="0.0.0.0")
