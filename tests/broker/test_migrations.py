"""The schema: Alembic migrations from an empty database, their agreement with
`broker.core.models`, the database-level guarantees the session logic leans on, and the
SQLite tuning. Runs on SQLite, and on PostgreSQL in the CI database run."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.core import counters
from broker.core.db import (
    alembic_config,
    analyze,
    create_engine,
    current_revision,
    migrate,
    session_factory,
)
from broker.core.models import Base, EndReason, Session, SessionStatus, Workspace, utcnow

pytestmark = pytest.mark.db

REPO = Path(__file__).resolve().parents[2]
ACTIVE_INDEX = "uq_sessions_active_workspace"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, busy_timeout_ms=2500)
    yield engine
    await engine.dispose()


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1, f"the migrations have several heads: {heads}"
    return heads[0]


async def tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: inspect(c).get_table_names())
    return set(names)


async def test_empty_database_migrates_to_head(engine):
    assert await current_revision(engine) is None
    assert await tables(engine) == set()

    await migrate(engine)

    assert await current_revision(engine) == head_revision()
    assert await tables(engine) == set(Base.metadata.tables) | {"alembic_version"}


async def test_migrating_again_is_a_no_op_and_keeps_data(engine):
    await migrate(engine)
    db = session_factory(engine)
    async with db() as s, s.begin():
        s.add(workspace("ws-keep"))
    await migrate(engine)
    assert await current_revision(engine) == head_revision()
    async with db() as s:
        assert (await s.scalars(select(Workspace.id))).all() == ["ws-keep"]


def _differences(conn: Connection) -> list[object]:
    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, Base.metadata))


async def test_models_and_migrations_agree(engine):
    await migrate(engine)
    async with engine.connect() as conn:
        differences = await conn.run_sync(_differences)
    assert differences == []


def _normalise(predicate: str) -> str:
    """PostgreSQL hands back ``((status)::text = 'active'::text)`` for
    ``status = 'active'``, ``<>`` for ``!=`` and ``NOT revoked`` for
    ``revoked = false``; drop casts, parentheses and spacing to compare."""
    predicate = re.sub(r"::\w+", "", predicate)
    predicate = re.sub(r"\bNOT\s+\(?(\w+)\)?", r"\1 = false", predicate, flags=re.I)
    predicate = predicate.replace("<>", "!=")
    return re.sub(r"[()\s]", "", predicate).lower()


# The partial indexes on sessions and their predicates, normalised.
PARTIAL_INDEXES = {
    "uq_sessions_active_workspace": "status='active'",
    "ix_sessions_active_started_id": "status='active'",
    "ix_sessions_active_user_started_id": "status='active'",
    "ix_sessions_pending_revoke": "status!='active'andrevoked=false",
}


async def test_partial_index_predicates_match_the_model(engine):
    # compare_metadata looks at an index's columns and uniqueness only, not at
    # its WHERE clause, so the predicates are compared here.
    await migrate(engine)
    async with engine.connect() as conn:
        dialect = conn.dialect.name
        indexes = await conn.run_sync(lambda c: inspect(c).get_indexes("sessions"))
    reflected = {i["name"]: i for i in indexes}
    model = {i.name: i for i in Session.__table__.indexes}
    partial = {n for n, i in model.items() if i.dialect_options[dialect]["where"] is not None}
    assert partial == set(PARTIAL_INDEXES)
    for name, predicate in PARTIAL_INDEXES.items():
        expected = str(model[name].dialect_options[dialect]["where"])
        actual = str(reflected[name]["dialect_options"][f"{dialect}_where"])
        assert _normalise(actual) == _normalise(expected) == predicate, name
    assert reflected[ACTIVE_INDEX]["unique"]
    assert reflected[ACTIVE_INDEX]["column_names"] == ["workspace_id"]


def workspace(workspace_id: str) -> Workspace:
    return Workspace(
        id=workspace_id,
        name=workspace_id,
        type="rdp",
        protocol="rdp",
        description="",
        enabled=True,
        updated_at=utcnow(),
    )


def session_row(
    workspace_id: str,
    status: SessionStatus,
    user: str = "alice",
    end_reason: str = "user_disconnect",
) -> Session:
    now = utcnow()
    ended = status != SessionStatus.ACTIVE
    return Session(
        id=str(uuid.uuid4()),
        user_id=user,
        user_email=f"{user}@example.com",
        workspace_id=workspace_id,
        workspace_name=workspace_id,
        workspace_type="rdp",
        status=status,
        started_at=now - timedelta(minutes=5),
        ended_at=now if ended else None,
        end_reason=end_reason if ended else None,
        ip_address="10.0.0.1",
        port=3389,
        tunnel_status="direct",
        tunnel_provider="direct",
        revoked=ended,
        mfa_verified=True,
        last_activity_at=now,
        last_viewer_at=now,
    )


async def test_database_allows_one_active_session_per_workspace(engine):
    await migrate(engine)
    db = session_factory(engine)
    async with db() as s, s.begin():
        s.add_all([workspace("ws-a"), workspace("ws-b")])
    async with db() as s, s.begin():
        s.add(session_row("ws-a", SessionStatus.ACTIVE, "alice"))

    with pytest.raises(IntegrityError):
        async with db() as s, s.begin():
            s.add(session_row("ws-a", SessionStatus.ACTIVE, "bob"))

    # Ended sessions do not count, and other workspaces are independent.
    async with db() as s, s.begin():
        s.add_all(
            [
                session_row("ws-a", SessionStatus.DISCONNECTED, "bob"),
                session_row("ws-a", SessionStatus.TERMINATED, "carol"),
                session_row("ws-a", SessionStatus.DISCONNECTED, "carol"),
                session_row("ws-b", SessionStatus.ACTIVE, "bob"),
            ]
        )
    async with db() as s:
        rows = (await s.execute(select(Session.workspace_id, Session.status))).all()
    assert sorted(rows) == [
        ("ws-a", "active"),
        ("ws-a", "disconnected"),
        ("ws-a", "disconnected"),
        ("ws-a", "terminated"),
        ("ws-b", "active"),
    ]


async def test_session_needs_a_known_workspace(engine):
    await migrate(engine)
    with pytest.raises(IntegrityError):
        async with session_factory(engine)() as s, s.begin():
            s.add(session_row("ws-nowhere", SessionStatus.ACTIVE))


async def test_ended_totals_start_from_the_sessions_already_ended(engine):
    # Sessions ended before the counters existed are counted by the migration
    # that adds them; active ones are not.
    await migrate(engine, "0006")
    db = session_factory(engine)
    async with db() as s, s.begin():
        s.add_all([workspace("ws-a"), workspace("ws-b")])
    async with db() as s, s.begin():
        s.add_all(
            [
                session_row("ws-a", SessionStatus.DISCONNECTED),
                session_row("ws-a", SessionStatus.DISCONNECTED),
                session_row("ws-b", SessionStatus.TERMINATED, end_reason="workspace_stop"),
                session_row("ws-b", SessionStatus.ACTIVE),
            ]
        )
    await migrate(engine)
    async with db() as s:
        assert await counters.ended_totals(s) == {"user_disconnect": 2, "workspace_stop": 1}
    async with db() as s, s.begin():
        await counters.add_ended(s, EndReason.WORKSPACE_STOP)
        await counters.add_ended(s, EndReason.IDLE_TIMEOUT)
    async with db() as s:
        assert await counters.ended_totals(s) == {
            "user_disconnect": 2,
            "workspace_stop": 2,
            "idle_timeout": 1,
        }


async def test_sqlite_planner_statistics_are_gathered(engine, database_url):
    await migrate(engine)
    async with session_factory(engine)() as s, s.begin():
        s.add(workspace("ws-a"))
    async with session_factory(engine)() as s, s.begin():
        s.add(session_row("ws-a", SessionStatus.ACTIVE))
    await analyze(engine)  # nothing to do on PostgreSQL (autovacuum's work)
    if not database_url.startswith("sqlite"):
        return
    async with engine.connect() as conn:
        analyzed = (await conn.exec_driver_sql("SELECT idx FROM sqlite_stat1")).scalars().all()
    assert "ix_sessions_active_user_started_id" in analyzed


async def test_sqlite_broker_gathers_planner_statistics_when_it_starts(
    start_broker, settings, engine, database_url
):
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    await start_broker(settings)
    for _ in range(100):  # its first pass runs in the background at start
        async with engine.connect() as conn:
            found = await conn.exec_driver_sql(
                "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'"
            )
            if found.scalar():
                return
        await asyncio.sleep(0.05)
    pytest.fail("no statistics gathered within 5 s of the start")


async def test_sqlite_runs_in_wal_mode_with_the_busy_timeout(engine, database_url):
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite tuning")
    async with engine.connect() as conn:
        journal = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
        busy = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
        foreign_keys = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar()
    assert journal == "wal"
    assert busy == 2500
    assert foreign_keys == 1


async def test_sqlite_file_directory_is_created(tmp_path, database_url):
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    path = tmp_path / "nested" / "dir" / "broker.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await migrate(engine)
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()
    assert path.exists()


RACER = textwrap.dedent(
    """
    import asyncio, sys
    from broker.core.db import create_engine, migrate

    async def run(url):
        engine = create_engine(url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    print("ready", flush=True)
    sys.stdin.readline()
    asyncio.run(run(sys.argv[1]))
    print("migrated", flush=True)
    """
)


@pytest.mark.slow  # several broker processes: over 10 s
async def test_replicas_migrating_at_once_all_succeed(database_url):
    """Several replicas started together with auto-migration: each waits its
    turn, none fails on the others' half-made schema."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    env["PYTHONPATH"] = str(REPO)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            RACER,
            database_url,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        for _ in range(4)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            assert line == b"ready\n"
        # Every process has imported everything; release them together.
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        results = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 60)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    failures = [
        # The exception's own line, not SQLAlchemy's trailing "Background on this error".
        next(
            (line for line in reversed(err.decode().splitlines()) if "Error" in line),
            err.decode()[-500:],
        )
        for (_, err), proc in zip(results, procs, strict=True)
        if proc.returncode
    ]
    assert failures == []
    engine = create_engine(database_url)
    try:
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()
