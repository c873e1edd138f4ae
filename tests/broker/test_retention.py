"""The retention pruner on a real database: what is older than its limit goes,
what is newer stays, nothing active or still holding a network grant is
touched, batches smaller than the rows still remove them all, every run that
removed anything is audited once, and removed audit entries leave a
checkpoint whose hash an export of them matches."""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import async_sessionmaker

from broker.config import RetentionSettings
from broker.core.archive import Checkpoint, Window, checkpoints, export, verify
from broker.core.audit import Action
from broker.core.db import DbSession
from broker.core.models import AppCookie, AuditEvent, Session, ViewerToken, utcnow
from broker.core.retention import LOCK_ID, Pruner
from broker.web.http import BROKER
from tests.broker.machine import Machine, StartMachine
from tests.broker.retention_support import (
    add_audit,
    add_session,
    clock,
    count,
    days_ago,
    exists,
    session_row,
)
from tests.conftest import PG_URL
from tunnels.direct import DirectProvider

pytestmark = pytest.mark.db

DEFAULTS = RetentionSettings()


@pytest.fixture
async def m(start_machine: StartMachine) -> Machine:
    return await start_machine(DirectProvider())


def pruner(m: Machine, settings: RetentionSettings = DEFAULTS, **kw: Any) -> Pruner:
    return Pruner(m.engine, m.db, settings, clock=clock, pause=kw.pop("pause", 0), **kw)


async def entries_of(m: Machine, action: str) -> list[AuditEvent]:
    return await entries_of_db(m.db, action)


async def entries_of_db(db: async_sessionmaker[DbSession], action: str) -> list[AuditEvent]:
    async with db() as s:
        rows = await s.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
        return list(rows.all())


# -- sessions and their credentials ------------------------------------------------


async def test_ended_sessions_older_than_the_limit_go_with_their_credentials(m: Machine) -> None:
    old = await add_session(m.db, ended_days_ago=91)
    recent = await add_session(m.db, ended_days_ago=89, workspace="ws-linux")
    active = await add_session(m.db, ended_days_ago=None, workspace="ws-wiki")  # started 500 d ago
    waiting = await add_session(m.db, ended_days_ago=200, revoked=False)  # grant not yet revoked

    pruned = await pruner(m).run_once()

    assert pruned is not None
    assert not await exists(m.db, Session, old.session_id)
    assert not await exists(m.db, ViewerToken, old.token_hash)
    assert not await exists(m.db, AppCookie, old.cookie_hash)
    for kept in (recent, active, waiting):
        assert await exists(m.db, Session, kept.session_id)
    # Credentials of sessions ended over a day ago go (they stopped working at
    # the end); the active session's stay.
    for ended in (recent, waiting):
        assert not await exists(m.db, ViewerToken, ended.token_hash)
        assert not await exists(m.db, AppCookie, ended.cookie_hash)
    assert await exists(m.db, ViewerToken, active.token_hash)
    assert await exists(m.db, AppCookie, active.cookie_hash)
    assert pruned.removed == {
        "sessions": 1,
        "viewer_tokens": 3,
        "app_cookies": 3,
        "audit_events": 0,
    }


async def test_viewer_credentials_of_a_session_ended_within_the_limit_stay(m: Machine) -> None:
    just_ended = await add_session(m.db, ended_days_ago=0.5)

    pruned = await pruner(m).run_once()

    assert pruned is not None and pruned.total == 0
    assert await exists(m.db, ViewerToken, just_ended.token_hash)
    assert await exists(m.db, AppCookie, just_ended.cookie_hash)
    assert await entries_of(m, Action.RETENTION_PRUNE) == []  # nothing removed, nothing written


async def test_a_session_whose_grant_is_revoked_later_goes_at_the_next_run(m: Machine) -> None:
    waiting = await add_session(m.db, ended_days_ago=120, revoked=False)
    assert (await pruner(m).run_once()).removed["sessions"] == 0  # type: ignore[union-attr]
    async with m.db() as db, db.begin():
        row = await db.get(Session, waiting.session_id)
        assert row is not None
        row.revoked = True

    assert (await pruner(m).run_once()).removed["sessions"] == 1  # type: ignore[union-attr]
    assert not await exists(m.db, Session, waiting.session_id)


async def test_zero_keeps_forever(m: Machine) -> None:
    old = await add_session(m.db, ended_days_ago=3000)
    await add_audit(m.db, [5000, 4000])
    forever = RetentionSettings(sessions_days=0, audit_days=0, viewer_tokens_hours=0)

    pruned = await pruner(m, forever).run_once()

    assert pruned is not None and pruned.total == 0 and pruned.cutoffs == {}
    assert await exists(m.db, Session, old.session_id)
    assert await exists(m.db, ViewerToken, old.token_hash)
    assert await count(m.db, AuditEvent) == 2


async def test_batches_smaller_than_the_rows_remove_them_all_in_short_statements(
    m: Machine,
) -> None:
    for i in range(7):
        await add_session(m.db, ended_days_ago=100 + i)
    recent = await add_session(m.db, ended_days_ago=10)
    await add_audit(m.db, [410 + i for i in range(8)] + [1])
    deletes: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM SESSIONS"):
            deletes.append(statement)

    event.listen(m.engine.sync_engine, "before_cursor_execute", note)
    try:
        pruned = await pruner(m, RetentionSettings(batch_size=3)).run_once()
    finally:
        event.remove(m.engine.sync_engine, "before_cursor_execute", note)

    assert pruned is not None
    assert pruned.removed["sessions"] == 7
    assert pruned.removed["audit_events"] == 8
    assert len(deletes) == 3  # 3 + 3 + 1
    assert await count(m.db, Session) == 1
    assert await exists(m.db, Session, recent.session_id)
    (checkpoint,) = await checkpoints(m.db)
    assert checkpoint.count == 8


# -- the audit trail of the pruning --------------------------------------------------


async def test_one_summary_entry_per_run_with_counts_and_cutoffs(m: Machine) -> None:
    await add_session(m.db, ended_days_ago=95)
    await add_audit(m.db, [401, 402, 30])

    pruned = await pruner(m).run_once()

    (summary,) = await entries_of(m, Action.RETENTION_PRUNE)
    assert pruned is not None
    assert summary.user_id is None  # the system
    assert summary.details["removed"] == {
        "sessions": 1,
        "viewer_tokens": 1,
        "app_cookies": 1,
        "audit_events": 2,
    }
    assert summary.details["cutoffs"] == {
        "viewer_tokens": "2027-05-31T12:00:00.000000Z",
        "sessions": "2027-03-03T12:00:00.000000Z",
        "audit_events": "2026-04-27T12:00:00.000000Z",
    }
    (checkpoint,) = await entries_of(m, Action.AUDIT_CHECKPOINT)
    assert summary.details["checkpoint_id"] == checkpoint.id

    again = await pruner(m).run_once()  # nothing left to remove: nothing written
    assert again is not None and again.total == 0
    assert len(await entries_of(m, Action.RETENTION_PRUNE)) == 1


async def test_the_checkpoint_hash_matches_the_export_of_the_pruned_range(m: Machine) -> None:
    old = await add_audit(m.db, [700, 600, 500, 401])
    young = await add_audit(m.db, [399, 1])
    cutoff = days_ago(400)
    archive = io.StringIO()
    exported = await export(m.db, archive, Window(until=cutoff), batch=3)  # before pruning

    pruned = await pruner(m).run_once()

    (checkpoint,) = await checkpoints(m.db)
    assert pruned is not None and pruned.checkpoint_id == checkpoint.id
    assert (checkpoint.first_id, checkpoint.last_id, checkpoint.count) == (old[0], old[-1], 4)
    assert checkpoint.before == cutoff
    assert checkpoint.sha256 == exported.hexdigest()
    assert verify(archive.getvalue().splitlines(), checkpoint).ok
    async with m.db() as db:
        left = (await db.scalars(select(AuditEvent.id).where(AuditEvent.id.in_(old + young)))).all()
    assert sorted(left) == young

    # A wider export (the whole log before pruning) checks against it too; one
    # with an entry changed or missing does not.
    tampered = archive.getvalue().replace('"n":2', '"n":3').splitlines()
    assert not verify(tampered, checkpoint).ok
    assert not verify(archive.getvalue().splitlines()[1:], checkpoint).ok


async def test_a_later_prune_hashes_the_earlier_checkpoint_with_the_rest(m: Machine) -> None:
    """Checkpoints age like any entry: the next one covers them, so the chain
    of what was removed is itself in the hashed record."""
    await add_audit(m.db, [500])
    await pruner(m).run_once()
    (first,) = await checkpoints(m.db)

    later = Pruner(m.engine, m.db, DEFAULTS, clock=lambda: days_ago(-401), pause=0)
    pruned = await later.run_once()

    assert pruned is not None and pruned.removed["audit_events"] >= 2  # the checkpoint, the summary
    (second,) = await checkpoints(m.db)
    assert second.first_id == first.id and second.id > first.id


async def test_a_run_failing_half_way_still_summarizes_what_it_removed(
    m: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_session(m.db, ended_days_ago=100)
    await add_audit(m.db, [500])
    p = pruner(m)

    async def fail(*_: object) -> None:
        raise OSError("database went away")

    monkeypatch.setattr(p, "_prune_audit", fail)
    with pytest.raises(OSError):
        await p.run_once()

    (summary,) = await entries_of(m, Action.RETENTION_PRUNE)
    assert summary.details["interrupted"] is True
    assert summary.details["removed"]["sessions"] == 1
    assert await count(m.db, AuditEvent, AuditEvent.action == "launch_workspace") == 1


# -- one run at a time ----------------------------------------------------------------


async def test_two_runs_at_once_in_one_process_run_once(m: Machine) -> None:
    for i in range(6):
        await add_session(m.db, ended_days_ago=100 + i)
    p = pruner(m, RetentionSettings(batch_size=1), pause=0.05)

    results = await asyncio.gather(p.run_once(), p.run_once())

    assert sorted(r is None for r in results) == [False, True]
    assert await count(m.db, Session) == 0


@pytest.mark.skipif(not PG_URL, reason="the advisory lock is PostgreSQL's")
async def test_two_pruners_on_postgresql_never_run_at_once(
    m: Machine, start_machine: StartMachine
) -> None:
    other = await start_machine(DirectProvider())  # another replica: its own engine
    for i in range(6):
        await add_session(m.db, ended_days_ago=100 + i)
    slow = RetentionSettings(batch_size=1)
    a = Pruner(m.engine, m.db, slow, clock=clock, pause=0.05)
    b = Pruner(other.engine, other.db, slow, clock=clock, pause=0.05)

    results = await asyncio.gather(a.run_once(), b.run_once())

    assert sorted(r is None for r in results) == [False, True]
    (ran,) = [r for r in results if r is not None]
    assert ran.removed["sessions"] == 6
    assert len(await entries_of(m, Action.RETENTION_PRUNE)) == 1
    # The lock was released: the next turn is anyone's.
    assert await b.run_once() is not None


@pytest.mark.skipif(not PG_URL, reason="the advisory lock is PostgreSQL's")
async def test_a_pruner_skips_its_turn_while_another_replica_holds_the_lock(m: Machine) -> None:
    old = await add_session(m.db, ended_days_ago=100)
    async with m.engine.connect() as holder:
        assert await holder.scalar(text("SELECT pg_try_advisory_lock(:id)"), {"id": LOCK_ID})
        await holder.commit()
        assert await pruner(m).run_once() is None
        assert await exists(m.db, Session, old.session_id)
        await holder.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": LOCK_ID})
        await holder.commit()
    assert await pruner(m).run_once() is not None
    assert not await exists(m.db, Session, old.session_id)


def test_a_checkpoint_entry_without_its_fields_is_refused() -> None:
    bad = AuditEvent(id=9, action=Action.AUDIT_CHECKPOINT, details={"first_id": 1})
    with pytest.raises(ValueError, match="not a well-formed checkpoint"):
        Checkpoint.of(bad)


async def test_a_running_broker_prunes_in_the_background(make_settings, start_broker) -> None:
    settings = make_settings(env={"BROKER_RETENTION_INTERVAL_SECONDS": "0.2"})
    client = await start_broker(settings)
    db = client.app[BROKER].db
    ended = utcnow() - timedelta(days=100)
    row = session_row(started=ended - timedelta(hours=1), ended=ended, workspace="ws-windows")
    async with db() as s, s.begin():
        s.add(row)

    async with asyncio.timeout(10):  # the run's summary: written once it is done
        while True:
            if summaries := await entries_of_db(db, Action.RETENTION_PRUNE):
                break
            await asyncio.sleep(0.05)
    assert summaries[0].details["removed"]["sessions"] == 1
    assert not await exists(db, Session, row.id)
