"""Per-connect bookkeeping written in batches: a viewer attached or left, the
user's input, a viewer's first frame.

A viewer connect used to write its session row twice (attach and detach), once
at its first ``sync`` and once per ``activity_write_seconds`` of input, each
in a transaction of its own; during a connect storm on SQLite those writes
queue on the database's one write lock, and every stream's task waits behind
them. They only feed clocks that are read in minutes (the idle limits, the
connect_failed clock), so `SessionTouches` collects them in memory and writes
all the sessions marked since the last write with one ``UPDATE`` per kind,
one transaction, at most ``interval`` seconds after the first mark: the
clocks move at most that much later, never earlier.

What is batched is never a decision: whether a credential or a session is
valid is still read from the database at every connect. Each ``UPDATE`` is
conditional on the session being active, like the writes it replaces.

A failed write is logged and dropped, as each single write was before: the
reaper's sweep marks the sessions with viewers here as watched every pass,
and the next input moves the input clock again. `flush` writes what is
pending now (tests, and shutdown through `SessionTouches.aclose`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import async_sessionmaker

from broker.core.db import DbSession
from broker.core.models import Session, SessionStatus

log = logging.getLogger(__name__)

BATCH_SECONDS = 1.0
CHUNK = 500  # ids in one IN (...): far below SQLite's bound-parameter limit


class SessionTouches:
    """Marks of sessions to write in the next batch (see the module docstring)."""

    def __init__(
        self,
        db: async_sessionmaker[DbSession],
        clock: Callable[[], datetime],
        *,
        interval: float = BATCH_SECONDS,
    ) -> None:
        self._db = db
        self._clock = clock
        self._interval = interval
        self._viewer: set[str] = set()
        self._input: set[str] = set()
        self._connected: set[str] = set()
        self._timer: asyncio.Task[None] | None = None
        self._writing = asyncio.Lock()

    def viewer(self, session_id: str) -> None:
        """A viewer attached to or left the session now (``last_viewer_at``)."""
        self._viewer.add(session_id)
        self._schedule()

    def input(self, session_id: str) -> None:
        """The user sent input on the session now (``last_activity_at``)."""
        self._input.add(session_id)
        self._schedule()

    def connected(self, session_id: str) -> None:
        """A viewer reached its first ``sync``: clear the session's last connect
        error and its connect_failed clock."""
        self._connected.add(session_id)
        self._schedule()

    def failed(self, session_id: str) -> None:
        """A viewer's try failed after the marks pending: a first ``sync``
        marked before it must not clear the failure being recorded now."""
        self._connected.discard(session_id)

    def pending(self) -> bool:
        return bool(self._viewer or self._input or self._connected)

    def _schedule(self) -> None:
        if self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(
                self._later(), name="session-touches"
            )

    async def _later(self) -> None:
        await asyncio.sleep(self._interval)
        await self.flush()

    async def flush(self) -> None:
        """Write every mark made so far (after a write under way), and stop the
        timer until the next mark; never raises."""
        async with self._writing:
            # Marks made from here on start a timer of their own.
            timer, self._timer = self._timer, None
            if timer is not None and timer is not asyncio.current_task():
                timer.cancel()  # asleep, or waiting for this lock: this write covers it
            viewer, self._viewer = self._viewer, set()
            inputs, self._input = self._input, set()
            connected, self._connected = self._connected, set()
            if not (viewer or inputs or connected):
                return
            try:
                await self._write(viewer, inputs, connected)
            except Exception as exc:
                log.warning(
                    "could not record viewer and input times of %d session(s): %s",
                    len(viewer | inputs | connected),
                    type(exc).__name__,
                )

    async def _write(self, viewer: set[str], inputs: set[str], connected: set[str]) -> None:
        now = self._clock()
        active = Session.status == SessionStatus.ACTIVE
        async with self._db() as db, db.begin():
            for ids in _chunks(viewer):
                await db.execute(
                    update(Session).where(Session.id.in_(ids), active).values(last_viewer_at=now)
                )
            for ids in _chunks(inputs):
                await db.execute(
                    update(Session).where(Session.id.in_(ids), active).values(last_activity_at=now)
                )
            for ids in _chunks(connected):
                await db.execute(
                    update(Session)
                    .where(Session.id.in_(ids), active, Session.connect_failing_since.is_not(None))
                    .values(last_connect_error=None, connect_failing_since=None)
                )

    async def aclose(self) -> None:
        """Write what is pending and stop the timer (a write under way is
        waited for, never cut short)."""
        await self.flush()


def _chunks(ids: Iterable[str]) -> Iterable[list[str]]:
    items = sorted(ids)  # a fixed order: concurrent writers lock rows alike
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]
