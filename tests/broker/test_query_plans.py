"""Every query whose cost must not grow with the history kept reads an index:
the plans of `broker.core.plans.statements` on seeded rows, with the
statistics the broker keeps (SQLite: `broker.core.db.analyze`; PostgreSQL:
what autovacuum would gather). No table is read whole, the listings read
their index in order (a deeper page is the same walk from further on), and
the questions about active sessions and pending revokes read the partial
indexes holding only those rows.

SQLite gets a few thousand sessions. PostgreSQL rightly reads a table of a
few thousand rows whole rather than through an index, so it gets 100,000
(copied in, a couple of seconds)."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import JSON, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from broker.core import plans
from broker.core.db import analyze, create_engine, migrate
from broker.core.models import AuditEvent, Base, Session, Workspace
from broker.core.queries import Anchor

pytestmark = pytest.mark.db

HEAVY = "heavy"  # one user with a long history (every 20th session)
WORKSPACES = 50
T0 = datetime(2026, 1, 1, tzinfo=UTC)

# The indexes each statement reads (all those named in a tuple, any one of a
# set; the audit log's own order is its primary key, which SQLite shows as a
# walk of the table itself). Active sessions: a partial index of them, or the
# status index's range of them; an ended status: the status index, or
# everyone's walked in order with the status as a filter when the status is
# common (the planners pick either, by their statistics).
STATUS = "ix_sessions_status_started_id"  # (status, started_at, id)
EXPECTED: dict[str, str | tuple[str, ...] | set[str]] = {
    "sessions": "ix_sessions_user_started_id",
    "sessions_active": "ix_sessions_active_user_started_id",
    "admin_sessions": "ix_sessions_started_id",
    "admin_sessions_status_active": {"ix_sessions_active_started_id", STATUS},
    "admin_sessions_status_ended": {STATUS, "ix_sessions_started_id"},
    "admin_sessions_workspace": "ix_sessions_workspace_started_id",
    "admin_sessions_user_id": ("ix_sessions_user_started_id", "ix_sessions_email_started_id"),
    "admin_sessions_user_email": ("ix_sessions_user_started_id", "ix_sessions_email_started_id"),
    "audit_own": "ix_audit_events_user_id_id",
    "admin_audit": "PRIMARY KEY",
    "admin_audit_user_id": ("ix_audit_events_user_id_id", "ix_audit_events_email_id"),
    "admin_audit_user_email": ("ix_audit_events_user_id_id", "ix_audit_events_email_id"),
    "admin_audit_action": "ix_audit_events_action_id",
    "admin_audit_session": "ix_audit_events_session_id",
    "admin_audit_until": "PRIMARY KEY",
    "pending_revokes": "ix_sessions_pending_revoke",
    "count_active": {"_sessions_active_", STATUS},  # an index of active sessions only
    "reap_due": {"_sessions_active_", STATUS},
    "count_active_for_user": "ix_sessions_active_user_started_id",
    "active_session_of_workspace": "uq_sessions_active_workspace",
}
# Listings read in their index's order: no sort at all.
IN_ORDER = {
    "sessions",
    "admin_sessions",
    "admin_sessions_status_active",
    "admin_sessions_status_ended",
    "admin_sessions_workspace",
}


def _session(i: int, total: int, rnd: random.Random, active_workspaces: set[str]) -> dict[str, Any]:
    user = HEAVY if i % 20 == 0 else f"user-{rnd.randrange(total // 20)}"
    workspace = f"ws-{rnd.randrange(WORKSPACES)}"
    started = T0 + timedelta(minutes=i)
    active = i >= total - 100 and workspace not in active_workspaces
    if active:
        active_workspaces.add(workspace)
    pending = not active and i % 500 == 7  # its grant's revoke keeps failing
    return {
        "id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
        "user_id": user,
        "user_email": f"{user}@example.com",
        "workspace_id": workspace,
        "workspace_name": workspace,
        "workspace_type": "rdp",
        "status": "active" if active else rnd.choice(["disconnected", "terminated"]),
        "started_at": started,
        "ended_at": None if active else started + timedelta(minutes=30),
        "end_reason": None if active else "user_disconnect",
        "ip_address": "10.0.0.1",
        "port": 3389,
        "tunnel_status": "encrypted" if active else "revoked",
        "tunnel_provider": "netbird",
        "revoked": not active and not pending,
        "mfa_verified": True,
        "last_activity_at": started,
        "last_viewer_at": started,
    }


def _audit(i: int, session: dict[str, Any]) -> dict[str, Any]:
    system = i % 4 == 3
    return {
        "at": session["started_at"] + timedelta(seconds=i % 2),
        "action": ("launch_workspace", "tunnel_granted", "disconnect_session", "revoke_tunnel")[
            i % 4
        ],
        "user_id": None if system else session["user_id"],
        "user_email": None if system else session["user_email"],
        "client_ip": None,
        "session_id": session["id"],
        "workspace_id": session["workspace_id"],
        "details": {},
    }


async def _insert(conn: AsyncConnection, model: type[Base], rows: list[dict[str, Any]]) -> None:
    if conn.dialect.name != "postgresql":
        await conn.execute(insert(model), rows)
        return
    # COPY: executemany would take half a minute for this many rows.
    table = model.__table__
    columns = list(rows[0])
    as_text = {c.name for c in table.columns if isinstance(c.type, JSON)}
    records = [tuple(json.dumps(r[c]) if c in as_text else r[c] for c in columns) for r in rows]
    raw = await conn.get_raw_connection()
    await raw.driver_connection.copy_records_to_table(table.name, records=records, columns=columns)


async def seed(engine: AsyncEngine) -> plans.Sample:
    total = 30_000 if engine.dialect.name == "postgresql" else 4000
    rnd = random.Random(13)
    active_workspaces: set[str] = set()
    rows = [_session(i, total, rnd, active_workspaces) for i in range(total)]
    async with engine.begin() as conn:
        await conn.execute(
            insert(Workspace),
            [
                {
                    "id": f"ws-{n}",
                    "name": f"ws-{n}",
                    "type": "rdp",
                    "protocol": "rdp",
                    "description": "",
                    "enabled": True,
                    "updated_at": T0,
                }
                for n in range(WORKSPACES)
            ],
        )
        await _insert(conn, Session, rows)
        await _insert(conn, AuditEvent, [_audit(i, rows[i // 2]) for i in range(2 * total)])
    heavy = [r for r in rows if r["user_id"] == HEAVY]
    middle = heavy[len(heavy) // 2]
    return plans.Sample(
        HEAVY,
        f"{HEAVY}@example.com",
        "ws-7",
        Anchor(middle["started_at"], middle["id"]),
        audit_before=total,  # the middle of the audit log's ids (1 to 2 x total)
    )


async def gather_statistics(engine: AsyncEngine) -> None:
    if engine.dialect.name == "sqlite":
        await analyze(engine)
        return
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql("VACUUM ANALYZE")


@pytest.fixture
async def seeded(database_url: str) -> AsyncIterator[tuple[AsyncEngine, plans.Sample]]:
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        sample = await seed(engine)
        await gather_statistics(engine)
        yield engine, sample
    finally:
        await engine.dispose()


def _names(expected: str | tuple[str, ...]) -> tuple[str, ...]:
    return (expected,) if isinstance(expected, str) else expected


def _keyset_in_index(plan: str) -> bool:
    """Whether the row-value keyset bounds the index walk (SQLite's SEARCH
    range, PostgreSQL's Index Cond), rather than filtering rows read."""
    return any(
        "(started_at,id)<(" in line or ("Index Cond" in line and "ROW(started_at" in line)
        for line in plan.splitlines()
    )


async def test_every_listed_query_reads_an_index_and_deeper_pages_the_same(seeded):
    engine, sample = seeded
    sqlite = engine.dialect.name == "sqlite"
    statements = plans.statements(sample)
    assert {name.removesuffix("_deep") for name in statements} == set(EXPECTED)
    wrong = {}
    for name, stmt in statements.items():
        plan = await plans.explain(engine, stmt)
        base = name.removesuffix("_deep")
        expected = EXPECTED[base]
        problems = []
        if isinstance(expected, set):
            if not any(n in plan for n in expected):
                problems.append(f"reads none of {sorted(expected)}")
            expected = ()
        indexes = [
            "audit_events_pkey" if (n == "PRIMARY KEY" and not sqlite) else n
            for n in _names(expected)
        ]
        scans = plans.table_scans(plan)
        if sqlite and "PRIMARY KEY" in indexes:
            # The audit log newest first: SQLite walks the table in rowid order.
            scans = [s for s in scans if s != "SCAN audit_events"]
            indexes = []
        problems += [f"reads the whole table: {s}" for s in scans]
        problems += [f"does not read {n}" for n in indexes if n not in plan]
        if base in IN_ORDER:
            problems += [f"sorts: {s}" for s in plans.sorts(plan)]
            # A deeper page is the same walk, started further on: the keyset
            # bounds the index range instead of filtering the rows read.
            if _keyset_in_index(plan) != name.endswith("_deep"):
                problems.append("the keyset does not bound the index walk")
        if problems:
            wrong[name] = (problems, plan)
    assert wrong == {}, "\n".join(f"{k}: {v}" for k, v in wrong.items())
