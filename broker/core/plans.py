"""How the database runs a statement: its plan as text (SQLite ``EXPLAIN QUERY
PLAN``, PostgreSQL ``EXPLAIN``), and the plan lines that walk a whole table or
sort.

For tests and benchmarks that check each query the broker runs stays on its
index at any size (`statements` lists them). The statement is compiled and
bound exactly as when it runs, so the plan is the one the database picks for
these values. (PostgreSQL may later run a prepared statement with a plan made
for no values at all; that is why the predicates of partial indexes are
written into the SQL, never bound: see `broker.core.models`.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from broker.core import audit, queries
from broker.core.models import SessionStatus


class _Explain(Executable, ClauseElement):
    inherit_cache = False

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement


@compiles(_Explain, "sqlite")
def _explain_sqlite(element: _Explain, compiler: SQLCompiler, **kw: Any) -> str:
    return "EXPLAIN QUERY PLAN " + compiler.process(element.statement, **kw)


@compiles(_Explain, "postgresql")
def _explain_postgresql(element: _Explain, compiler: SQLCompiler, **kw: Any) -> str:
    return "EXPLAIN " + compiler.process(element.statement, **kw)


async def explain(engine: AsyncEngine, stmt: ClauseElement) -> str:
    """The plan of ``stmt`` as the database would run it now, one step a line
    (SQLite's steps indented under their parent)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(_Explain(stmt))).all()
    if engine.dialect.name != "sqlite":
        return "\n".join(str(row[0]) for row in rows)
    depth: dict[int, int] = {0: -1}
    lines = []
    for node, parent, _, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + str(detail))
    return "\n".join(lines)


# SQLite's walk of a table by itself; ``anon_N`` are subqueries (SQLAlchemy's names).
_SQLITE_TABLE_SCAN = re.compile(r"^\s*SCAN (?!anon_)\w+\s*$")


def table_scans(plan: str) -> list[str]:
    """The lines of ``plan`` that walk a table by itself rather than an index:
    PostgreSQL's ``Seq Scan``, SQLite's ``SCAN t`` without ``USING``. Walking
    an index, partial ones included (they hold only the rows they are for),
    is not one. On SQLite a walk of a table in rowid order that stops at the
    LIMIT (the audit log, newest first) reads the same; callers tell it apart."""
    return [
        line.strip()
        for line in plan.splitlines()
        if _SQLITE_TABLE_SCAN.match(line) or "Seq Scan" in line
    ]


def sorts(plan: str) -> list[str]:
    """The lines of ``plan`` that sort rows instead of reading them in order
    (bounded when they sort only a page's rows, as the ``user=`` merges do)."""
    return [
        line.strip()
        for line in plan.splitlines()
        if "TEMP B-TREE" in line or re.match(r"^\s*(->\s*)?(Incremental )?Sort\b", line)
    ]


@dataclass(frozen=True, slots=True)
class Sample:
    """Values to plan the listed statements with: a user (id and email), a
    workspace, a session and an audit entry id to page back from."""

    user_id: str
    email: str
    workspace_id: str
    anchor: queries.Anchor
    audit_before: int


def statements(sample: Sample, limit: int = 100) -> dict[str, ClauseElement]:
    """Every query whose cost must not grow with the history kept, by name:
    the API's and the admin's listings, each also as a deeper page
    (``<name>_deep``, after ``sample.anchor`` or ``sample.audit_before``),
    the background passes' and ``/metrics``' questions. One does grow: the
    audit log by time range alone (``admin_audit_until``) walks it in id order
    from the newest entry, past every entry after ``until``."""
    s, after = sample, sample.anchor
    f = queries.SessionFilter
    sessions = {
        "sessions": f(user_id=s.user_id),
        "sessions_active": f(user_id=s.user_id, status=SessionStatus.ACTIVE),
        "admin_sessions": f(),
        "admin_sessions_status_active": f(status=SessionStatus.ACTIVE),
        "admin_sessions_status_ended": f(status=SessionStatus.DISCONNECTED),
        "admin_sessions_workspace": f(workspace_id=s.workspace_id),
        "admin_sessions_user_id": f(user=s.user_id),
        "admin_sessions_user_email": f(user=s.email),
    }
    found: dict[str, ClauseElement] = {}
    for name, filters in sessions.items():
        found[name] = queries.listing(filters, limit=limit)
        found[name + "_deep"] = queries.listing(filters, limit=limit, after=after)
    q = audit.AuditQuery
    entries = {
        "audit_own": q(user_id=s.user_id, limit=limit),
        "admin_audit": q(limit=limit),
        "admin_audit_user_id": q(user=s.user_id, limit=limit),
        "admin_audit_user_email": q(user=s.email, limit=limit),
        "admin_audit_action": q(action="launch_workspace", limit=limit),
        "admin_audit_session": q(session_id=after.id, limit=limit),
        "admin_audit_until": q(until=after.started_at, limit=limit),
    }
    for name, query in entries.items():
        found[name] = audit.listing(query)
        found[name + "_deep"] = audit.listing(replace(query, before_id=s.audit_before))
    found["pending_revokes"] = queries.pending_revoke_ids(100)
    # The reaper's pass with every limit on: a group of workspaces with their
    # own limits, every other workspace, and the guacd ones failing to connect.
    at = after.started_at
    reap = queries.reap_statement(
        [
            queries.Deadlines(frozenset({s.workspace_id}), started=at, viewer=at, input=at),
            queries.Deadlines(frozenset({s.workspace_id}), True, at, at, at),
        ],
        ([s.workspace_id], at),
    )
    assert reap is not None
    found["reap_due"] = reap
    found["count_active"] = queries.count_active()
    found["count_active_for_user"] = queries.count_active_for_user(s.user_id)
    found["active_session_of_workspace"] = queries.active_session_of_workspace(s.workspace_id)
    return found
