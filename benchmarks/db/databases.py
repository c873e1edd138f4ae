"""The two databases the benchmark runs on, each made fresh for one run and
removed after it: a PostgreSQL database created beside the maintenance one,
or an SQLite file in a temporary folder. Both answer the benchmark's own
questions directly (not through the broker): a value, an EXPLAIN, and on
PostgreSQL the database's activity counters."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from benchmarks.db.seed import Progress, Shape, migrated, seed_postgres, seed_sqlite

ACTIVITY = (
    "SELECT xact_commit + xact_rollback AS transactions, tup_returned, tup_fetched,"
    " tup_inserted + tup_updated + tup_deleted AS written"
    " FROM pg_stat_database WHERE datname = $1"
)


class Database(Protocol):
    kind: str
    url: str  # the broker's (SQLAlchemy) URL

    async def seed(self, shape: Shape, *, history: bool) -> float: ...

    async def value(self, sql: str) -> Any: ...

    async def explain(self, sql: str, params: Any) -> list[str]: ...

    async def activity(self) -> dict[str, int] | None: ...

    async def drop(self) -> None: ...


class Postgres:
    kind = "postgres"

    def __init__(self, maintenance: str, name: str) -> None:
        parts = urlsplit(maintenance)
        self._maintenance = maintenance
        self._name = name
        self._dsn = urlunsplit(parts._replace(path=f"/{name}"))
        self.url = urlunsplit(parts._replace(scheme="postgresql+asyncpg", path=f"/{name}"))
        self._admin: asyncpg.Connection | None = None
        self._conn: asyncpg.Connection | None = None

    @classmethod
    async def create(cls, maintenance: str, label: str) -> Postgres:
        db = cls(maintenance, f"broker_bench_{label}_{os.getpid()}")
        db._admin = await asyncpg.connect(maintenance)
        await db._admin.execute(f'DROP DATABASE IF EXISTS "{db._name}"')
        await db._admin.execute(f'CREATE DATABASE "{db._name}"')
        await migrated(db.url)
        return db

    async def seed(self, shape: Shape, *, history: bool) -> float:
        seconds = await seed_postgres(self._dsn, shape, Progress(), history=history)
        self._conn = await asyncpg.connect(self._dsn)
        return seconds

    async def value(self, sql: str) -> Any:
        assert self._conn is not None
        return await self._conn.fetchval(sql)

    async def explain(self, sql: str, params: Any) -> list[str]:
        assert self._conn is not None
        rows = await self._conn.fetch("EXPLAIN " + sql, *(params or ()))
        return [str(r[0]) for r in rows]

    async def activity(self) -> dict[str, int] | None:
        """The database's cumulative counters (every connection's, flushed by
        PostgreSQL when a connection goes idle and when it closes)."""
        assert self._admin is not None
        await self._admin.execute("SELECT pg_stat_clear_snapshot()")
        row = await self._admin.fetchrow(ACTIVITY, self._name)
        return {k: int(v) for k, v in dict(row).items()}

    async def drop(self) -> None:
        if self._conn is not None:
            await self._conn.close()
        if self._admin is not None:
            await self._admin.execute(f'DROP DATABASE IF EXISTS "{self._name}" WITH (FORCE)')
            await self._admin.close()


class Sqlite:
    kind = "sqlite"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "broker.db"
        self.url = f"sqlite+aiosqlite:///{self.path}"
        self._conn: sqlite3.Connection | None = None

    @classmethod
    async def create(cls, label: str) -> Sqlite:
        db = cls(Path(tempfile.mkdtemp(prefix=f"bench-db-{label}-")))
        await migrated(db.url)
        return db

    async def seed(self, shape: Shape, *, history: bool) -> float:
        seconds = seed_sqlite(self.path, shape, Progress(), history=history)
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        return seconds

    async def value(self, sql: str) -> Any:
        assert self._conn is not None
        row = self._conn.execute(sql).fetchone()
        return row[0] if row else None

    async def explain(self, sql: str, params: Any) -> list[str]:
        """``EXPLAIN QUERY PLAN`` as an indented tree."""
        assert self._conn is not None
        rows = self._conn.execute("EXPLAIN QUERY PLAN " + sql, params or ()).fetchall()
        depth: dict[int, int] = {0: -1}
        lines = []
        for node, parent, _, detail in rows:
            depth[node] = depth.get(parent, -1) + 1
            lines.append("  " * depth[node] + str(detail))
        return lines

    async def activity(self) -> dict[str, int] | None:
        return None  # SQLite keeps no such counters: the broker's hook counts VM steps

    async def drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        shutil.rmtree(self.folder, ignore_errors=True)
