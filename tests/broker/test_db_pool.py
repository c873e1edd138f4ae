"""The PostgreSQL connection pool holds at most ``pool_size + max_overflow``
connections: one more waits, then fails, instead of opening past the limit."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.exc import TimeoutError as PoolTimeout

from broker.core.db import create_engine

pytestmark = pytest.mark.db


async def test_pool_opens_at_most_pool_size_plus_max_overflow(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("the pool limits apply to PostgreSQL")
    engine = create_engine(database_url, pool_size=1, max_overflow=1, statement_timeout=0.5)
    try:
        held = [await engine.connect() for _ in range(2)]
        with pytest.raises(PoolTimeout):
            await asyncio.wait_for(engine.connect(), 5)
        for conn in held:
            await conn.close()
    finally:
        await engine.dispose()
