"""The listings page through history exactly: newest first, every row once,
whatever the filter (`broker.core.queries.listing`, `broker.core.audit.listing`),
including rows started at the same instant and an admin's ``user=`` that
matches a user id or an email address."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from broker.core.audit import Action, Actor, AuditQuery, record
from broker.core.audit import query as audit_query
from broker.core.db import DbSession, create_engine, migrate, session_factory
from broker.core.models import Session, Workspace
from broker.core.queries import SessionQueries

pytestmark = pytest.mark.db

T0 = datetime(2026, 3, 5, 14, 30, tzinfo=UTC)

# Every third session starts at the same instant as the one before it.
PEOPLE = [
    ("alice", "alice@example.com"),
    ("bob", "bob@example.com"),
    # Someone whose user id is another person's email address.
    ("alice@example.com", "carol@example.com"),
]


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[async_sessionmaker[DbSession]]:
    engine = create_engine(database_url)
    await migrate(engine)
    yield session_factory(engine)
    await engine.dispose()


async def seed(db: async_sessionmaker[DbSession], count: int = 30) -> list[Session]:
    async with db() as s, s.begin():
        for n in range(3):
            s.add(
                Workspace(
                    id=f"ws-{n}",
                    name=f"ws-{n}",
                    type="rdp",
                    protocol="rdp",
                    description="",
                    enabled=True,
                    updated_at=T0,
                )
            )
    rows = []
    for i in range(count):
        user, email = PEOPLE[i % len(PEOPLE)]
        started = T0 + timedelta(minutes=i - (i % 3 == 2))
        rows.append(
            Session(
                id=str(uuid.uuid4()),
                user_id=user,
                user_email=email,
                workspace_id=f"ws-{i % 3}",
                workspace_name="w",
                workspace_type="rdp",
                status="active" if i == count - 1 else ("disconnected", "terminated")[i % 2],
                started_at=started,
                ended_at=None if i == count - 1 else started + timedelta(minutes=5),
                end_reason=None if i == count - 1 else "user_disconnect",
                ip_address="10.0.0.1",
                port=3389,
                tunnel_status="direct",
                tunnel_provider="direct",
                revoked=i != count - 1,
                mfa_verified=True,
                last_activity_at=started,
                last_viewer_at=started,
            )
        )
    async with db() as s, s.begin():
        s.add_all(rows)
    return rows


def newest_first(rows: list[Session]) -> list[str]:
    return [r.id for r in sorted(rows, key=lambda r: (r.started_at, r.id), reverse=True)]


async def all_pages(queries: SessionQueries, limit: int = 4, **filters: str) -> list[str]:
    seen: list[str] = []
    before = None
    while True:
        page = await queries.query(limit=limit, before=before, **filters)
        seen += [s.id for s in page]
        if len(page) < limit:
            return seen
        before = page[-1].id


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"user_id": "alice"},
        {"user": "alice"},
        {"user": "alice@example.com"},
        {"user": "carol@example.com"},
        {"workspace_id": "ws-1"},
        {"status": "terminated"},
        {"status": "active"},
        {"user": "alice@example.com", "workspace_id": "ws-2", "status": "disconnected"},
    ],
    ids=str,
)
async def test_pages_hold_every_matching_session_once_newest_first(db, filters):
    rows = await seed(db)

    def matches(r: Session) -> bool:
        user = filters.get("user")
        return (
            filters.get("user_id", r.user_id) == r.user_id
            and (user is None or user in (r.user_id, r.user_email))
            and filters.get("workspace_id", r.workspace_id) == r.workspace_id
            and filters.get("status", r.status) == r.status
        )

    expected = newest_first([r for r in rows if matches(r)])
    assert expected  # each case matches something
    assert await all_pages(SessionQueries(db), **filters) == expected


async def test_user_matching_both_an_id_and_an_email_lists_each_session_once(db):
    rows = await seed(db)
    # alice's sessions (by email) and the sessions of the user whose id is
    # alice's email address: the two branches, merged.
    got = await SessionQueries(db).query(user="alice@example.com", limit=1000)
    both = [r for r in rows if "alice@example.com" in (r.user_id, r.user_email)]
    assert [s.id for s in got] == newest_first(both)
    assert len({r.user_id for r in both}) == 2


async def test_audit_user_matches_the_id_or_the_email_page_by_page(db):
    async with db() as s, s.begin():
        for i in range(12):
            user, email = PEOPLE[i % len(PEOPLE)]
            actor = Actor.system() if i % 4 == 3 else Actor(user, email)
            record(s, Action.LAUNCH_WORKSPACE, actor, T0 + timedelta(seconds=i), n=i)

    async def pages(q: AuditQuery) -> list[object]:
        seen: list[object] = []
        while True:
            async with db() as s:
                page = await audit_query(s, q)
            seen += [e.details["n"] for e in page]
            if len(page) < q.limit:
                return seen
            q = AuditQuery(user=q.user, user_id=q.user_id, before_id=page[-1].id, limit=q.limit)

    # By email: alice's entries and those of the user whose id is her email.
    assert await pages(AuditQuery(user="alice@example.com", limit=2)) == [9, 8, 6, 5, 2, 0]
    assert await pages(AuditQuery(user="bob", limit=2)) == [10, 4, 1]
    assert await pages(AuditQuery(user_id="alice", limit=2)) == [9, 6, 0]
    assert await pages(AuditQuery(limit=5)) == list(range(11, -1, -1))
