"""The retention pruner: removes history older than ``[retention]`` allows.

Each run (`Pruner.run_once`, every ``retention.interval_seconds``):

1. viewer tokens and app cookies of sessions that ended before the viewer
   token cutoff (they stopped working when their session ended);
2. ended sessions past their age, with their viewer tokens and app cookies
   (children first: they hold foreign keys to the session). Never an active
   session, and never one whose network grant is not revoked yet
   (``revoked = false``): the revoke retry still needs that row;
3. audit entries past their age: first an ``audit_checkpoint`` entry is
   committed with the SHA-256 of the entries about to go, their first and
   last id, count and cutoff (`broker.core.archive`), then they are deleted.
   A run stopped half-way leaves the rest to the next run, under a
   checkpoint of its own: no entry is ever deleted without a checkpoint
   covering it;
4. one ``retention_prune`` audit entry with the counts per table and the
   cutoffs, when anything was removed (also when the run failed half-way,
   then marked ``interrupted``, if the database still takes it).

Recordings are not stored by the broker yet: their setting is checked at
startup and nothing is pruned for it.

Sessions and audit entries are found through indexes on their time columns
(``sessions.ended_at``, ``audit_events.at``); viewer credentials through
theirs (``created_at``: those made before the cutoff), each checked against
its session by primary key. Rows go by primary key, ``batch_size`` at a time,
each batch its own short transaction with a pause after it, so no lock is
held for long and launches go on meanwhile (on SQLite they queue for a
moment on the busy timeout).

One run at a time: on PostgreSQL (several replicas) a run holds a session
advisory lock (`LOCK_ID`) on a connection of its own and a replica that
cannot take it skips its turn, so replicas started together prune once.
The lock dies with that connection, so a replica that crashes mid-run
blocks nobody. On SQLite one broker process owns the database file, so an
in-process lock is enough (no lease table to migrate and clean up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Delete, delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from broker.config import RetentionSettings
from broker.core import audit
from broker.core.archive import RangeHash, Window, entries, entry_line, iso_micro
from broker.core.audit import Action, Actor
from broker.core.db import DbSession
from broker.core.models import AppCookie, AuditEvent, Session, SessionStatus, ViewerToken, utcnow
from broker.core.turns import Turns, lock_id

log = logging.getLogger(__name__)

# Any fixed 64-bit number, distinct from the migration lock: the PostgreSQL
# advisory lock that lets one replica prune at a time.
LOCK_NAME = "retention"
LOCK_ID = lock_id(LOCK_NAME)  # the advisory lock a run holds (`broker.core.turns`)


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one run removed, per table, and the cutoffs it used (ISO times;
    a table kept forever has none). ``checkpoint_id`` is the audit checkpoint
    written when audit entries were removed."""

    removed: dict[str, int]
    cutoffs: dict[str, str]
    checkpoint_id: int | None = None

    @property
    def total(self) -> int:
        return sum(self.removed.values())


@dataclass
class _Counts:
    sessions: int = 0
    viewer_tokens: int = 0
    app_cookies: int = 0
    audit_events: int = 0
    cutoffs: dict[str, str] = field(default_factory=dict)
    checkpoint_id: int | None = None

    def result(self) -> Pruned:
        removed = {
            "sessions": self.sessions,
            "viewer_tokens": self.viewer_tokens,
            "app_cookies": self.app_cookies,
            "audit_events": self.audit_events,
        }
        return Pruned(removed, self.cutoffs, self.checkpoint_id)


class Pruner:
    """Prunes the database ``engine`` (through ``db``) by ``settings``.
    ``pause`` is the rest after each batch, letting other writers in."""

    def __init__(
        self,
        engine: AsyncEngine,
        db: async_sessionmaker[DbSession],
        settings: RetentionSettings,
        *,
        clock: Callable[[], datetime] = utcnow,
        pause: float = 0.01,
    ) -> None:
        self._engine = engine
        self._db = db
        self._settings = settings
        self._clock = clock
        self._pause = pause
        self._running = asyncio.Lock()
        self._turns = Turns(engine)

    async def run_once(self) -> Pruned | None:
        """One run; None when another run (here or on another replica) holds
        the turn. Database errors propagate (the next interval tries again)."""
        async with self._turn() as mine:
            if not mine:
                return None
            pruned = await self._prune(self._clock())
        if pruned.total:
            log.info("retention: removed %s", pruned.removed)
        return pruned

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[bool]:
        if self._running.locked():
            yield False
            return
        async with self._running, self._turns.take(LOCK_NAME) as mine:
            yield mine

    async def _prune(self, now: datetime) -> Pruned:
        counts = _Counts()
        try:
            await self._steps(now, counts)
        except BaseException:
            # What was removed before the failure is still summarized, if the
            # database lets us; the failure itself propagates.
            with contextlib.suppress(Exception):
                await self._summarize(now, counts.result(), interrupted=True)
            raise
        pruned = counts.result()
        await self._summarize(now, pruned)
        return pruned

    async def _summarize(self, now: datetime, pruned: Pruned, *, interrupted: bool = False) -> None:
        """The run's one ``retention_prune`` entry, when it removed anything."""
        if not pruned.total:
            return
        details: dict[str, Any] = {
            "removed": pruned.removed,
            "cutoffs": pruned.cutoffs,
            "checkpoint_id": pruned.checkpoint_id,
        }
        if interrupted:
            details["interrupted"] = True
        async with self._db() as db, db.begin():
            audit.record(db, Action.RETENTION_PRUNE, Actor.system(), now, **details)

    async def _steps(self, now: datetime, counts: _Counts) -> None:
        s = self._settings
        if s.viewer_tokens_hours:
            cutoff = now - timedelta(hours=s.viewer_tokens_hours)
            counts.cutoffs["viewer_tokens"] = iso_micro(cutoff)
            await self._prune_credentials(cutoff, counts)
        if s.sessions_days:
            cutoff = now - timedelta(days=s.sessions_days)
            counts.cutoffs["sessions"] = iso_micro(cutoff)
            await self._prune_sessions(cutoff, counts)
        if s.audit_days:
            cutoff = now - timedelta(days=s.audit_days)
            counts.cutoffs["audit_events"] = iso_micro(cutoff)
            await self._prune_audit(cutoff, now, counts)

    # -- viewer tokens and app cookies --------------------------------------------

    async def _prune_credentials(self, cutoff: datetime, counts: _Counts) -> None:
        """Viewer tokens and app cookies of sessions that ended before ``cutoff``."""
        for model in (ViewerToken, AppCookie):
            # Driven from the credentials made before the cutoff (those of a
            # session that ended before it were made while it ran), along
            # their index: about an interval's launches, and the credentials of
            # sessions running since before the cutoff. Each looks up its
            # session by primary key: a correlated scalar subquery, which
            # PostgreSQL never turns into a join that would scan the whole
            # session history. The batch is read first and deleted by primary
            # key (a DELETE ... IN (subquery) may be planned as a hash join
            # over the whole table).
            ended = select(Session.ended_at).where(Session.id == model.session_id)
            batch = (
                select(model.token_hash)
                .where(model.created_at < cutoff, ended.scalar_subquery() < cutoff)
                .limit(self._settings.batch_size)
            )
            removed = 0
            while True:
                async with self._db() as db, db.begin():
                    hashes = list((await db.scalars(batch)).all())
                    if hashes:
                        removed += await _deleted(
                            db, delete(model).where(model.token_hash.in_(hashes))
                        )
                if len(hashes) < self._settings.batch_size:
                    break
                await asyncio.sleep(self._pause)
            if model is ViewerToken:
                counts.viewer_tokens += removed
            else:
                counts.app_cookies += removed

    # -- sessions -----------------------------------------------------------------

    async def _prune_sessions(self, cutoff: datetime, counts: _Counts) -> None:
        gone = (
            Session.ended_at < cutoff,
            Session.status != SessionStatus.ACTIVE,
            Session.revoked.is_(True),
        )
        while True:
            async with self._db() as db, db.begin():
                ids = list(
                    (
                        await db.scalars(
                            select(Session.id)
                            .where(*gone)
                            .order_by(Session.ended_at)  # oldest first, along its index
                            .limit(self._settings.batch_size)
                        )
                    ).all()
                )
                if not ids:
                    return
                # Children first: they hold foreign keys to the sessions.
                counts.viewer_tokens += await _deleted(
                    db, delete(ViewerToken).where(ViewerToken.session_id.in_(ids))
                )
                counts.app_cookies += await _deleted(
                    db, delete(AppCookie).where(AppCookie.session_id.in_(ids))
                )
                counts.sessions += await _deleted(
                    db, delete(Session).where(Session.id.in_(ids), *gone)
                )
            if len(ids) < self._settings.batch_size:
                return
            await asyncio.sleep(self._pause)

    # -- audit entries --------------------------------------------------------------

    async def _prune_audit(self, cutoff: datetime, now: datetime, counts: _Counts) -> None:
        """Checkpoint, then delete, the audit entries written before ``cutoff``:
        hashed exactly as ``broker audit export --until <cutoff>`` writes them."""
        digest = RangeHash()
        async for e in entries(self._db, Window(until=cutoff), batch=self._settings.batch_size):
            digest.add(e.id, entry_line(e))
        if digest.first_id is None or digest.last_id is None:
            return
        async with self._db() as db, db.begin():
            checkpoint = audit.record(
                db,
                Action.AUDIT_CHECKPOINT,
                Actor.system(),
                now,
                first_id=digest.first_id,
                last_id=digest.last_id,
                count=digest.count,
                sha256=digest.hexdigest(),
                before=iso_micro(cutoff),
            )
            await db.flush()
            counts.checkpoint_id = checkpoint.id
        in_range = (
            AuditEvent.id >= digest.first_id,
            AuditEvent.id <= digest.last_id,
            AuditEvent.at < cutoff,
        )
        removed = await self._delete_audit(in_range)
        counts.audit_events += removed
        if removed != digest.count:
            log.warning(
                "retention: checkpoint %s counted %d audit entries, %d were deleted",
                counts.checkpoint_id,
                digest.count,
                removed,
            )

    async def _delete_audit(self, in_range: tuple[ColumnElement[bool], ...]) -> int:
        removed, cursor = 0, 0
        while True:
            async with self._db() as db, db.begin():
                ids = list(
                    (
                        await db.scalars(
                            select(AuditEvent.id)
                            .where(AuditEvent.id > cursor, *in_range)
                            .order_by(AuditEvent.id)
                            .limit(self._settings.batch_size)
                        )
                    ).all()
                )
                if ids:
                    removed += await _deleted(db, delete(AuditEvent).where(AuditEvent.id.in_(ids)))
            if len(ids) < self._settings.batch_size:
                return removed
            cursor = ids[-1]
            await asyncio.sleep(self._pause)


async def _deleted(db: DbSession, stmt: Delete) -> int:
    """Run a bulk ``DELETE`` (no ORM bookkeeping) and return how many rows went."""
    result = await db.execute(stmt.execution_options(synchronize_session=False))
    return cast(CursorResult[Any], result).rowcount
