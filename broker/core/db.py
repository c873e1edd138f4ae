"""The database: engine creation, SQLite tuning, migrations.

SQLite (the default) runs in WAL mode with a busy timeout, and every
transaction starts with ``BEGIN IMMEDIATE`` so two writers queue on the busy
timeout instead of deadlocking on a read-to-write upgrade, except a
`single_read`; `analyze` keeps its planner's statistics fresh. PostgreSQL is used as is (``postgresql+asyncpg://``;
autovacuum keeps its statistics).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as DbSession

from broker.config.files import create_private_file, make_private_dir

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"

__all__ = [
    "DbSession",
    "alembic_config",
    "analyze",
    "create_engine",
    "migrate",
    "session_factory",
    "single_read",
]

# Rows of each index SQLite's ANALYZE samples: statistics good enough to choose
# between indexes, in a few milliseconds whatever the tables' size.
SQLITE_ANALYSIS_LIMIT = 400


def create_engine(
    url: str,
    *,
    busy_timeout_ms: int = 5000,
    pool_size: int = 10,
    max_overflow: int = 10,
    statement_timeout: float = 10.0,
    echo: bool = False,
) -> AsyncEngine:
    """An async engine for ``url``; a SQLite file and its missing directories
    are created private (0600, 0700), and SQLite gives its ``-wal`` and
    ``-shm`` files the database file's mode.
    PostgreSQL: at most ``pool_size + max_overflow`` connections (the overflow
    ones closed when returned), every connect and statement bounded by
    ``statement_timeout``."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url, busy_timeout_ms, echo)
    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql+asyncpg"):
        connect_args = {
            "timeout": statement_timeout,
            "command_timeout": statement_timeout,
            "server_settings": {"statement_timeout": str(int(statement_timeout * 1000))},
        }
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_timeout=statement_timeout,
        echo=echo,
        connect_args=connect_args,
    )


SQLITE_MMAP_BYTES = 256 * 1024 * 1024
SQLITE_CACHE_KIB = 32 * 1024


def _sqlite_engine(url: str, busy_timeout_ms: int, echo: bool) -> AsyncEngine:
    _create_sqlite_file(make_url(url).database or "")
    engine = create_async_engine(url, echo=echo, connect_args={"timeout": busy_timeout_ms / 1000})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        # Reads of a long history from memory, not a read() per page: pages
        # mapped from the OS's cache (shared by every connection, grown only as
        # the file is read), and up to 32 MiB of pages kept per connection.
        cur.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
        cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if not conn.get_execution_options().get(SINGLE_READ):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _create_sqlite_file(database: str) -> None:
    """Create the database file 0600 (and its missing directories 0700) before
    SQLite does: SQLite would make it 0644 less the umask, and it creates the
    ``-wal`` and ``-shm`` files with the database file's own mode, so all three
    stay private. An existing file is left as it is."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    make_private_dir(path.parent)
    create_private_file(path)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[DbSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


# The execution option of a `single_read` connection.
SINGLE_READ = "broker_single_read"


async def single_read(db: DbSession) -> None:
    """Run ``db``'s statements outside a transaction, before its first one: for
    a read of one statement, which sees one consistent snapshot by itself.
    SQLite: no ``BEGIN IMMEDIATE``, so the read never waits for the write lock
    (in WAL mode readers and the writer do not block each other); PostgreSQL:
    autocommit, without the ``BEGIN`` and ``ROLLBACK`` round trips. Nothing
    read this way may be written back in the same session."""
    options: dict[str, Any] = {SINGLE_READ: True}
    if db.get_bind().dialect.name == "postgresql":
        options["isolation_level"] = "AUTOCOMMIT"
    await db.connection(execution_options=options)


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


# Any fixed 64-bit number: the PostgreSQL advisory lock replicas take turns on.
MIGRATION_LOCK_ID = 0x62726F6B6572  # "broker"


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (Alembic), on the engine's own connection.

    Safe to run from several replicas at once: on PostgreSQL they queue on an
    advisory lock held for the migration's transaction (SQLite's ``BEGIN
    IMMEDIATE`` already serializes them); the later ones then find the schema
    at ``revision`` and do nothing.

    A schema already at the newest revision (every start but the first after
    an upgrade) is seen with one query, without importing Alembic: tens of
    megabytes a running broker would hold for nothing."""
    if revision == "head" and await _at_newest(engine):
        return
    from alembic import command

    def run(conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        cfg = alembic_config(engine.url.render_as_string(hide_password=False))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)


async def analyze(engine: AsyncEngine) -> None:
    """SQLite: refresh the statistics its planner chooses indexes by (nothing on
    PostgreSQL). Without them SQLite may read a user's whole history through
    the index of all their sessions rather than the partial index of their
    active ones. Sampled (`SQLITE_ANALYSIS_LIMIT`), so it takes milliseconds
    at any size; run at start and now and then as the tables grow.
    (``PRAGMA optimize`` before SQLite 3.46 analyzes only the tables its own
    connection has queried, so on a fresh pooled connection it does nothing.)"""
    if engine.dialect.name != "sqlite":
        return
    async with engine.begin() as conn:
        await conn.exec_driver_sql(f"PRAGMA analysis_limit={SQLITE_ANALYSIS_LIMIT}")
        await conn.exec_driver_sql("ANALYZE")


_REVISION = re.compile(r"^(down_revision|revision) = (?:\"([^\"]+)\"|None)$", re.MULTILINE)


def newest_revision() -> str | None:
    """The newest migration's revision, read from the scripts' own
    ``revision = "..."`` and ``down_revision = "..."`` lines; None unless
    that names exactly one (Alembic then decides)."""
    revisions: set[str] = set()
    replaced: set[str] = set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        for kind, value in _REVISION.findall(script.read_text(encoding="utf-8")):
            if value:
                (revisions if kind == "revision" else replaced).add(value)
    heads = revisions - replaced
    return heads.pop() if len(heads) == 1 else None


async def _at_newest(engine: AsyncEngine) -> bool:
    newest = newest_revision()
    if newest is None:
        return False

    def read(conn: Connection) -> list[str]:
        if not inspect(conn).has_table("alembic_version"):
            return []
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())

    async with engine.connect() as conn:
        return await conn.run_sync(read) == [newest]


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    def read(conn: Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(read)
