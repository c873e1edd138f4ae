"""A fresh database with N sessions of a realistic shape, written by set-based SQL.

The schema is the broker's own (its migrations, run here as at start). Rows
are generated in the database (PostgreSQL ``generate_series``, SQLite a
recursive CTE) in chunks, so a million sessions take a minute or two:

- about 1,000 users (``user-0000`` ... ``user-0998``) and one heavy user,
  ``user-heavy``, with 5,000 sessions (a tenth of N when N is small), one of
  them active;
- 1 % of the sessions active, each on a workspace of its own (the database
  allows one active session per workspace), so there are N/100 workspaces;
- the ended ones spread over the last 85 days (inside the default
  ``[retention] sessions_days`` of 90, so the pruner finds nothing to remove
  and N stays N while it is measured), ended by the user or a workspace stop,
  their grants revoked;
- two audit entries per session (the launch, and the end or the grant), in
  time order; a viewer token for each active session and each ended in the
  last day (what the pruner leaves with ``viewer_tokens_hours = 24``).

Seeded sessions are not counted in any counter the broker keeps elsewhere
(they were never "ended" by a broker); only the tables are filled.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from broker.core.db import create_engine, migrate

HEAVY_USER = "user-heavy"
HEAVY_EMAIL = f"{HEAVY_USER}@example.com"
USERS = 999  # plus the heavy one
HISTORY = 85 * 86400
TOKENS_KEPT = 86400  # viewer tokens of sessions ended this long ago are pruned
CHUNK = 100_000


@dataclass(frozen=True)
class Shape:
    """Which generated row is what: every rule is a function of the row number
    ``g`` (0 .. rows-1), so SQL can compute it."""

    rows: int

    @property
    def heavy_every(self) -> int:
        """The heavy user owns rows with ``g % heavy_every == 1``."""
        heavy = min(5000, self.rows // 10)
        return max(2, self.rows // heavy) if heavy else self.rows + 2

    @property
    def heavy_active(self) -> int:
        """The heavy user's newest session, kept active."""
        h = self.heavy_every
        return ((self.rows - 2) // h) * h + 1 if self.rows >= 2 else -1

    @property
    def workspaces(self) -> int:
        return self.rows // 100 + 2

    @property
    def step(self) -> int:
        """Seconds between two ended sessions' starts."""
        return max(1, HISTORY // max(1, self.rows))

    def probe_workspace(self) -> str:
        """A workspace with about the average number of sessions (for ``workspace=``)."""
        return workspace_id(min(42, self.workspaces - 2))


def workspace_id(index: int) -> str:
    return f"ws-{index:05d}"


class Sql:
    """The few expressions that differ between the two databases."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgresql"

    def series(self, lo: int, hi: int, name: str = "g") -> str:
        """A CTE ``name(x)`` of the integers lo..hi, in order."""
        if self.pg:
            return f"{name}(x) AS (SELECT generate_series({lo}, {hi}))"
        return (
            f"RECURSIVE {name}(x) AS"
            f" (SELECT {lo} UNION ALL SELECT x + 1 FROM {name} WHERE x < {hi})"
        )

    def hex(self, expr: str, width: int) -> str:
        if self.pg:
            return f"lpad(to_hex({expr}), {width}, '0')"
        return f"printf('%0{width}x', {expr})"

    def ts(self, epoch: str) -> str:
        """A UTC timestamp from epoch seconds, stored as the broker stores one."""
        if self.pg:
            return f"to_timestamp({epoch})"
        # SQLAlchemy's SQLite format: naive UTC with six decimals.
        return f"strftime('%Y-%m-%d %H:%M:%S', {epoch}, 'unixepoch') || '.000000'"

    def bool(self, expr: str) -> str:
        return f"({expr})" if self.pg else f"(CASE WHEN {expr} THEN 1 ELSE 0 END)"

    def text(self, expr: str) -> str:
        return f"({expr})::text" if self.pg else f"CAST({expr} AS TEXT)"


def statements(
    shape: Shape, dialect: str, now: int, *, history: bool = True
) -> list[tuple[str, str]]:
    """(what, SQL) to run in order: the workspaces, then the sessions and their
    rows chunk by chunk; without ``history`` only the active sessions (and
    their rows), so that "0" and "N" differ by the ended history alone."""
    sql = Sql(dialect)
    only = "" if history else " WHERE status = 'active'"
    out = [("workspaces", _workspaces(shape, sql, now))]
    for lo in range(0, shape.rows, CHUNK):
        hi = min(shape.rows, lo + CHUNK) - 1
        out += [
            (f"sessions {lo:,}..{hi:,}", _sessions(shape, sql, now, lo, hi) + only),
            (f"audit entries {lo:,}..{hi:,}", _audit(shape, sql, now, lo, hi) + only),
            (f"viewer tokens {lo:,}..{hi:,}", _tokens(shape, sql, now, lo, hi, history)),
        ]
    return out


def _workspaces(shape: Shape, sql: Sql, now: int) -> str:
    name = sql.hex("x", 1)  # any text; the id is what matters
    return f"""
        WITH {sql.series(0, shape.workspaces - 1)}
        INSERT INTO workspaces (id, name, type, protocol, description, enabled, updated_at)
        SELECT 'ws-' || {_pad5(sql, "x")}, 'Workspace ' || {name}, 'linux', 'vnc', '',
               {sql.bool("1 = 1")}, {sql.ts(str(now))}
        FROM g"""


def _pad5(sql: Sql, expr: str) -> str:
    return f"lpad({sql.text(expr)}, 5, '0')" if sql.pg else f"printf('%05d', {expr})"


def _rows(shape: Shape, sql: Sql, now: int, carry: str = "") -> str:
    """Every column of session ``g.x`` (and the columns ``carry`` names), as a
    CTE ``s`` the three inserts read (so the audit entries and tokens need no
    lookup of their session)."""
    h, rows = shape.heavy_every, shape.rows
    heavy = f"(x % {h} = 1)"
    active = f"((x % 100 = 0 AND NOT {heavy}) OR x = {shape.heavy_active})"
    number = f"x % {USERS}"
    padded = f"lpad({sql.text(number)}, 4, '0')" if sql.pg else f"printf('%04d', {number})"
    user = f"CASE WHEN {heavy} THEN '{HEAVY_USER}' ELSE 'user-' || {padded} END"
    workspace = (
        f"CASE WHEN x = {shape.heavy_active} THEN {shape.workspaces - 1}"
        f" WHEN {active} THEN x / 100 ELSE x % {shape.workspaces - 1} END"
    )
    started = (
        f"CASE WHEN x = {shape.heavy_active} THEN {now - 60}"
        f" WHEN {active} THEN {now - 1} - (x % 3000)"
        f" ELSE {now - 7200} - ({rows} - x) * {shape.step} END"
    )
    ended = f"CASE WHEN {active} THEN NULL ELSE {sql.ts(f'({started}) + 1800')} END"
    status = (
        f"CASE WHEN {active} THEN 'active' WHEN x % 3 = 2 THEN 'terminated' ELSE 'disconnected' END"
    )
    reason = (
        f"CASE WHEN {active} THEN NULL WHEN x % 3 = 2 THEN 'workspace_stop'"
        " ELSE 'user_disconnect' END"
    )
    return f"""s AS (
        SELECT x{carry}, {session_id_sql(sql)} AS id,
               u AS user_id, u || '@example.com' AS user_email,
               'ws-' || {_pad5(sql, "w")} AS workspace_id,
               'Workspace ' || {sql.text("w")} AS workspace_name, {status} AS status,
               {sql.ts(started)} AS started_at, {ended} AS ended_at, {reason} AS end_reason
        FROM (SELECT x{carry}, {user} AS u, {workspace} AS w FROM g) AS p)"""


def _sessions(shape: Shape, sql: Sql, now: int, lo: int, hi: int) -> str:
    return f"""
        WITH {sql.series(lo, hi)}, {_rows(shape, sql, now)}
        INSERT INTO sessions (
            id, user_id, user_email, workspace_id, workspace_name, workspace_type, status,
            started_at, ended_at, end_reason, ip_address, port, target_host, target_port,
            tunnel_status, tunnel_provider, grant_id, revoked, mfa_verified, client_ip,
            last_activity_at, last_viewer_at)
        SELECT id, user_id, user_email, workspace_id, workspace_name, 'linux', status,
               started_at, ended_at, end_reason, '10.0.0.1', 5900, '127.0.0.1', 5900,
               CASE WHEN status = 'active' THEN 'direct' ELSE 'revoked' END, 'direct', NULL,
               {sql.bool("status <> 'active'")}, {sql.bool("1 = 1")}, '127.0.0.1',
               COALESCE(ended_at, started_at), COALESCE(ended_at, started_at)
        FROM s"""


def session_id_sql(sql: Sql) -> str:
    """A UUID-shaped id, unique by its tail, scattered by its head (like uuid4)."""
    return (
        f"{sql.hex('(x * 2654435761) % 4294967296', 8)} || '-0000-4000-8000-' || {sql.hex('x', 12)}"
    )


def _audit(shape: Shape, sql: Sql, now: int, lo: int, hi: int) -> str:
    """Two entries per session (``k`` 0 and 1), generated in time order, so
    their ids ascend with ``at`` (within a chunk; the active sessions' are recent)."""
    pairs = sql.series(2 * lo, 2 * hi + 1, "e")
    return f"""
        WITH {pairs}, g AS (SELECT x / 2 AS x, x % 2 AS k FROM e),
             {_rows(shape, sql, now, carry=", k")}
        INSERT INTO audit_events (
            at, action, user_id, user_email, client_ip, session_id, workspace_id, details)
        SELECT CASE WHEN k = 0 THEN started_at ELSE COALESCE(ended_at, started_at) END,
               CASE WHEN k = 0 THEN 'launch_workspace'
                    WHEN status = 'active' THEN 'tunnel_granted'
                    WHEN status = 'terminated' THEN 'stop_workspace'
                    ELSE 'disconnect_session' END,
               user_id, user_email, '127.0.0.1', id, workspace_id, '{{}}'
        FROM s"""


def _tokens(shape: Shape, sql: Sql, now: int, lo: int, hi: int, history: bool) -> str:
    recent = f"ended_at >= {sql.ts(str(now - TOKENS_KEPT))}" if history else "1 = 0"
    return f"""
        WITH {sql.series(lo, hi)}, {_rows(shape, sql, now)}
        INSERT INTO viewer_tokens (
            token_hash, session_id, user_id, created_at, exchanged_at, roles, is_admin,
            mfa_verified, expires_at)
        SELECT {sql.hex("x", 64)}, id, user_id, started_at, NULL, '[]',
               {sql.bool("1 = 0")}, {sql.bool("1 = 1")}, started_at
        FROM s WHERE ended_at IS NULL OR {recent}"""


# -- the databases -----------------------------------------------------------------


async def migrated(url: str) -> None:
    """The broker's schema, by its own migrations."""
    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


async def seed_postgres(dsn: str, shape: Shape, say: Progress, *, history: bool) -> float:
    """Seed over ``dsn`` (asyncpg form); then ``VACUUM ANALYZE``, as autovacuum
    would have done in a database that grew to this size. Returns seconds."""
    started = time.monotonic()
    conn = await asyncpg.connect(dsn)
    try:
        # The rows are consistent by construction: skip the foreign-key
        # triggers' lookup per row where allowed (a superuser's setting).
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("SET session_replication_role = replica")
        now = int(time.time())
        for what, sql in statements(shape, "postgresql", now, history=history):
            await conn.execute(sql)
            say(what)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return time.monotonic() - started


def seed_sqlite(path: Path, shape: Shape, say: Progress, *, history: bool) -> float:
    """Seed the file at ``path``. No ``ANALYZE``: the broker never runs one, so
    a real SQLite file that grew to this size has no statistics either."""
    started = time.monotonic()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for what, sql in statements(shape, "sqlite", int(time.time()), history=history):
            conn.execute("BEGIN")
            conn.execute(sql)
            conn.execute("COMMIT")
            say(what)
    finally:
        conn.close()
    return time.monotonic() - started


class Progress:
    """Prints what was seeded, at most every few seconds (stderr)."""

    def __init__(self, every: float = 10.0) -> None:
        self._every = every
        self._last = time.monotonic()

    def __call__(self, what: str) -> None:
        now = time.monotonic()
        if now - self._last >= self._every:
            print(f"  seeded {what}", file=sys.stderr, flush=True)
            self._last = now
