"""One turn at a time across processes: background jobs that must run once per
pass for the whole deployment (every worker of ``broker serve --workers`` and
every replica on the same PostgreSQL database), not once per process.

`Turns.take` holds a PostgreSQL session advisory lock, named for the job, on
a connection of its own for the length of one pass; a process that cannot
take it skips that pass (another process is doing it). The lock dies with its
connection, so a process that crashes mid-pass blocks nobody, and the next
interval of any process runs the job again. On SQLite one broker process owns
the database file, so every turn is taken (``broker serve --workers`` refuses
SQLite).

Costs one pooled connection and two short statements per pass, whoever wins.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)


def lock_id(name: str) -> int:
    """The advisory lock of job ``name``: a stable signed 64-bit number (the
    same in every process and release)."""
    digest = hashlib.blake2b(f"broker-job:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Turns:
    """Advisory-lock turns on ``engine``'s database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._shared = engine.dialect.name == "postgresql"

    @asynccontextmanager
    async def take(self, name: str) -> AsyncIterator[bool]:
        """Yields True while this process holds ``name``'s turn, False when
        another process holds it (do nothing then). Database errors propagate."""
        if not self._shared:
            yield True
            return
        key = lock_id(name)
        async with self._engine.connect() as conn:
            got = await conn.scalar(text("SELECT pg_try_advisory_lock(:id)"), {"id": key})
            await conn.commit()  # a session lock: it outlives this transaction
            if not got:
                yield False
                return
            try:
                yield True
            finally:
                await _unlock(conn, key, name)

    def once(
        self, name: str, job: Callable[[], Awaitable[object]]
    ) -> Callable[[], Awaitable[None]]:
        """``job`` run only in the turns this process takes."""

        async def turn() -> None:
            async with self.take(name) as mine:
                if mine:
                    await job()

        return turn


async def _unlock(conn: AsyncConnection, key: int, name: str) -> None:
    """Release the lock; if that fails, drop the connection (the lock dies
    with it) rather than return it to the pool still locked."""
    try:
        await conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": key})
        await conn.commit()
    except Exception:
        log.warning("%s: could not release its advisory lock; dropping the connection", name)
        await conn.invalidate()
