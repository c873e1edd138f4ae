"""What several workers (or replicas) share through PostgreSQL: one rate-limit
budget (`broker.core.ratebuckets`, `broker.web.ratelimit.SharedLimiter`) and
one turn per background pass (`broker.core.turns`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.core.db import create_engine, migrate
from broker.core.ratebuckets import RateStore
from broker.core.turns import Turns, lock_id
from broker.web.ratelimit import SharedLimiter

pytestmark = pytest.mark.db


@pytest.fixture
async def engines(database_url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """Two engines on one database, as two worker processes have."""
    if not database_url.startswith("postgresql"):
        pytest.skip("shared only on PostgreSQL (--workers refuses SQLite)")
    a, b = create_engine(database_url), create_engine(database_url)
    await migrate(a)
    yield a, b
    await a.dispose()
    await b.dispose()


async def test_one_budget_for_every_process(engines) -> None:
    a, b = (RateStore(e) for e in engines)
    # 3 at once, then 1 a minute: spent alternately from both processes.
    spent = [await (a if i % 2 else b).take("ip:127.0.0.1", 1.0, 3) for i in range(4)]
    assert spent[:3] == [0.0, 0.0, 0.0]
    assert 55 < spent[3] <= 60  # about a minute until the next token
    assert await a.take("ip:127.0.0.2", 1.0, 3) == 0.0  # keys are independent


async def test_concurrent_spends_never_overspend(engines) -> None:
    a, b = (RateStore(e) for e in engines)
    results = await asyncio.gather(*((a, b)[i % 2].take("user:x", 0.01, 5) for i in range(20)))
    assert results.count(0.0) == 5


async def test_full_buckets_are_pruned(engines) -> None:
    store = RateStore(engines[0])
    await store.take("fast", 6e7, 1)  # full again a microsecond later
    await store.take("slow", 1.0, 5)  # a round trip takes longer than that
    assert await store.prune() == 1
    assert await store.take("slow", 1.0, 5) == 0.0  # still there: 3 left after this
    assert await store.take("slow", 1.0, 5) == 0.0
    assert await store.take("slow", 1.0, 5) == 0.0
    assert await store.take("slow", 1.0, 5) == 0.0
    assert await store.take("slow", 1.0, 5) > 0


async def test_a_refused_key_is_refused_before_the_request_without_asking(engines) -> None:
    limiter = SharedLimiter(RateStore(engines[0]), "ip_auth_failures", 1.0, 1)
    assert await limiter.peek("a") == 0.0
    assert await limiter.take("a") == 0.0
    assert await limiter.peek("a") == 0.0  # not known here as spent out yet
    assert await limiter.take("a") > 0
    assert await limiter.peek("a") > 0  # from now on, until its token is back


async def test_one_turn_at_a_time_across_processes(engines) -> None:
    a, b = (Turns(e) for e in engines)
    async with a.take("reaper") as first:
        async with b.take("reaper") as second, b.take("revoke-retry") as other:
            assert (first, second, other) == (True, False, True)
    async with b.take("reaper") as again:
        assert again  # released after the pass
    assert lock_id("reaper") == lock_id("reaper") != lock_id("revoke-retry")
