"""Token buckets kept in PostgreSQL, shared by every process on the database:
the workers of ``broker serve --workers`` (and replicas), so a rate limit
holds for the host instead of once per process.

`RateStore.take` is one statement (an UPSERT that refills and spends in the
row, atomically, by the database's clock) in autocommit; only a refusal reads
the row again to say how long until a token. Rows of buckets full again are
removed by `RateStore.prune` (the broker runs it once a minute, in one
process). The table is UNLOGGED (migration 0011).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

_NOW = "extract(epoch FROM clock_timestamp())::double precision"
# Parameters typed explicitly: left to infer, PostgreSQL reads `1 / $n` as integers.
_BURST = "CAST(:burst AS double precision)"
_RATE = "CAST(:rate AS double precision)"
_LEVEL = f"least({_BURST}, r.tokens + ({{now}} - r.at) * {_RATE})"

_TAKE = text(
    f"""
    INSERT INTO rate_limits AS r (key, tokens, at, full_at)
    VALUES (:key, {_BURST} - 1, {_NOW}, {_NOW} + 1 / {_RATE})
    ON CONFLICT (key) DO UPDATE SET
        tokens = {_LEVEL.format(now="excluded.at")} - 1,
        at = excluded.at,
        full_at = excluded.at + ({_BURST} - {_LEVEL.format(now="excluded.at")} + 1) / {_RATE}
    WHERE {_LEVEL.format(now="excluded.at")} >= 1
    RETURNING r.tokens
    """
)
_LEFT = text(f"SELECT {_LEVEL.format(now=_NOW)} FROM rate_limits AS r WHERE r.key = :key")
_PRUNE = text(f"DELETE FROM rate_limits WHERE full_at <= {_NOW}")


class RateStore:
    """The ``rate_limits`` table of ``engine`` (PostgreSQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def take(self, key: str, per_minute: float, burst: int) -> float:
        """Spend a token of ``key``'s bucket (``burst`` at most, ``per_minute``
        refilled a minute): 0.0 when there was one, else the seconds until
        there will be (nothing is spent then)."""
        rate = per_minute / 60.0
        values = {"key": key, "burst": float(burst), "rate": rate}
        async with self._engine.connect() as conn:
            if (await conn.execute(_TAKE, values)).first() is not None:
                return 0.0
            left = await conn.scalar(_LEFT, values)
        if left is None:  # pruned in between: full again
            return 0.0
        return max(0.0, (1.0 - float(left)) / rate)

    async def prune(self) -> int:
        """Remove the buckets full again (the same as never seen); how many."""
        async with self._engine.connect() as conn:
            result = await conn.execute(_PRUNE)
        return int(result.rowcount or 0)
