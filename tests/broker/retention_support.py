"""Rows for the retention and archive tests, written straight into the test
database with the times a test needs (months or years back)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from broker.core.credentials import hash_token
from broker.core.db import DbSession
from broker.core.models import AppCookie, AuditEvent, Session, ViewerToken

NOW = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def clock() -> datetime:
    return NOW


@dataclass(frozen=True, slots=True)
class Seeded:
    session_id: str
    token_hash: str
    cookie_hash: str


def session_row(
    *, started: datetime, ended: datetime | None, revoked: bool = True, workspace: str = "ws-rdp"
) -> Session:
    return Session(
        id=str(uuid.uuid4()),
        user_id="alice",
        user_email="alice@example.com",
        workspace_id=workspace,
        workspace_name="Windows",
        workspace_type="rdp",
        status="active" if ended is None else "disconnected",
        started_at=started,
        ended_at=ended,
        end_reason=None if ended is None else "user_disconnect",
        ip_address="10.0.0.1",
        port=3389,
        tunnel_status="revoked" if revoked else "failed",
        tunnel_provider="netbird",
        grant_id="grant-1",
        revoked=revoked,
        mfa_verified=True,
        client_ip="192.0.2.7",
        last_activity_at=started,
        last_viewer_at=started,
    )


async def add_session(
    db: async_sessionmaker[DbSession],
    *,
    ended_days_ago: float | None,
    revoked: bool = True,
    workspace: str = "ws-rdp",
) -> Seeded:
    """A session (active when ``ended_days_ago`` is None, started an hour
    before its end) with a viewer token and an app cookie."""
    end = None if ended_days_ago is None else days_ago(ended_days_ago)
    start = (end or days_ago(500)) - timedelta(hours=1)
    row = session_row(started=start, ended=end, revoked=revoked, workspace=workspace)
    token, cookie = hash_token(f"t-{row.id}"), hash_token(f"c-{row.id}")
    async with db() as s, s.begin():
        s.add(row)
        await s.flush()
        s.add(ViewerToken(token_hash=token, session_id=row.id, user_id="alice", created_at=start))
        s.add(AppCookie(token_hash=cookie, session_id=row.id, user_id="alice", created_at=start))
    return Seeded(row.id, token, cookie)


async def add_audit(
    db: async_sessionmaker[DbSession], ages_in_days: Iterable[float], **details: object
) -> list[int]:
    """One audit entry per age, oldest given first; their ids."""
    rows = [
        AuditEvent(
            at=days_ago(age),
            action="launch_workspace",
            user_id="alice",
            user_email="ålice@example.com",  # not ASCII: escaped in the export line
            client_ip="192.0.2.7",
            session_id=None,
            workspace_id="ws-rdp",
            details={"n": i, "ratio": 0.1 * i, "nested": {"b": [1, "two"], "a": None}, **details},
        )
        for i, age in enumerate(ages_in_days)
    ]
    async with db() as s, s.begin():
        s.add_all(rows)
    return [r.id for r in rows]


async def count(db: async_sessionmaker[DbSession], model: type, *where: object) -> int:
    async with db() as s:
        found = await s.scalar(select(func.count()).select_from(model).where(*where))
    return found or 0


async def exists(db: async_sessionmaker[DbSession], model: type, key: str) -> bool:
    async with db() as s:
        return await s.get(model, key) is not None


Clock = Callable[[], datetime]
