"""Session events between replicas over PostgreSQL ``LISTEN/NOTIFY``.

`PgEventBus` is an `EventBus`: local listeners are called as before, and every
event is also sent with ``NOTIFY`` on one channel. Each replica keeps one
connection ``LISTEN``-ing on it and hands events from other replicas to its
own listeners, so the replica holding a session's viewer stream closes it
within moments of another replica ending the session.

The listening connection is watched, because while it is down this replica
hears nothing and every session ended elsewhere keeps its stream here until
the reaper's sweep:

- a loss (the server closed it, the database restarted, or a probe every
  ``probe_seconds`` went unanswered: a half-open TCP connection raises
  nothing) is logged once at WARNING and counted; reconnecting starts at once
  and backs off (``first_retry_seconds``, doubling, at most
  ``max_retry_seconds``), each failure logged only at DEBUG;
- listening again is logged at INFO, and the callbacks given to `on_resumed`
  run (the app wakes the reaper, whose sweep closes the streams of sessions
  ended during the gap);
- `state` tells readiness and metrics whether it listens, since when not,
  and how many connections were lost.

`aclose` stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.core.db import DbSession
from broker.core.events import BusState, EventBus, SessionEnded
from broker.core.models import utcnow

if TYPE_CHECKING:
    import asyncpg  # imported when listening: a SQLite broker never loads it

log = logging.getLogger(__name__)

CHANNEL = "broker_session_events"
CONNECT_TIMEOUT = 10.0
PROBE_TIMEOUT = 5.0


def retry_delay(failures: int, first: float, most: float) -> float:
    """Seconds to wait after ``failures`` failed connection attempts in a row:
    ``first``, doubling with each failure, at most ``most``."""
    return min(most, first * 2.0 ** max(0, failures - 1))


class PgEventBus(EventBus):
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        first_retry_seconds: float = 0.25,
        max_retry_seconds: float = 10.0,
        probe_seconds: float = 30.0,
    ) -> None:
        super().__init__()
        self._engine = engine
        self._dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._origin = uuid.uuid4().hex  # this replica, to skip its own notifications
        # How this replica's listening connection shows in pg_stat_activity.
        self.application_name = f"broker-events-{self._origin[:12]}"
        self._first_retry = first_retry_seconds
        self._max_retry = max_retry_seconds
        self._probe = probe_seconds
        self._task: asyncio.Task[None] | None = None
        self._resumed: list[Callable[[], object]] = []
        self.listening = asyncio.Event()
        self._down_since = utcnow()  # not listening yet
        self._down_clock: float | None = time.monotonic()
        self._disconnects = 0
        self._warned = False  # a WARNING was logged for the current gap

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="pg-events")

    def on_resumed(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` each time listening resumes after a gap (not at a
        clean start): events published during the gap were missed."""
        self._resumed.append(callback)

    def state(self) -> BusState:
        listening = self.listening.is_set()
        return BusState(listening, None if listening else self._down_since, self._disconnects)

    async def announce(self, db: DbSession, event: SessionEnded) -> None:
        """``pg_notify`` in the caller's transaction: PostgreSQL sends it on
        commit, so other replicas hear of the change exactly when it is true,
        at no extra round trip or commit."""
        await db.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": CHANNEL, "payload": self._payload(event)},
        )

    def _payload(self, event: SessionEnded) -> str:
        return json.dumps({"o": self._origin, "s": event.session_id, "r": event.reason})

    async def _listen_forever(self) -> None:
        failures = 0  # connection attempts failed in a row
        while True:
            try:
                conn, lost = await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # refused, timed out, database not accepting...
                failures += 1
                self._not_listening(f"cannot listen ({type(exc).__name__})")
                await asyncio.sleep(retry_delay(failures, self._first_retry, self._max_retry))
                continue
            failures = 0
            try:
                self._now_listening()
                why = await self._until_lost(conn, lost)
            finally:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)
            self._disconnects += 1
            self._not_listening(f"listening connection lost ({why})")

    async def _connect(self) -> tuple[asyncpg.Connection, asyncio.Event]:
        import asyncpg

        conn = await asyncpg.connect(
            self._dsn,
            timeout=CONNECT_TIMEOUT,
            server_settings={"application_name": self.application_name},
        )
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)
            raise
        return conn, lost

    async def _until_lost(self, conn: asyncpg.Connection, lost: asyncio.Event) -> str:
        """Return why ``conn`` stopped listening: closed, or a probe unanswered."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), self._probe)
                return "closed"
            try:
                await conn.fetchval("SELECT 1", timeout=PROBE_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                return f"no answer to a probe: {type(exc).__name__}"

    def _not_listening(self, what: str) -> None:
        if self.listening.is_set():
            self.listening.clear()
            self._down_since, self._down_clock = utcnow(), time.monotonic()
        if self._warned:
            log.debug("replica events: %s; retrying", what)
            return
        self._warned = True
        log.warning(
            "replica events: %s; streams of sessions ended on other replicas close only "
            "at the reaper's sweep until this replica listens again",
            what,
        )

    def _now_listening(self) -> None:
        gap = self._warned
        if gap:
            down = time.monotonic() - (self._down_clock or time.monotonic())
            log.info("replica events: listening again after %.1f s; sweeping streams now", down)
        self._warned, self._down_clock = False, None
        self.listening.set()
        if gap:
            for callback in list(self._resumed):
                try:
                    callback()
                except Exception:  # one failing callback never stops listening
                    log.exception("replica events: a resume callback failed")

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            data = json.loads(payload)
            event = SessionEnded(str(data["s"]), str(data["r"]))
            origin = data["o"]
        except (ValueError, KeyError, TypeError):
            return
        if origin != self._origin:
            task = asyncio.ensure_future(self.deliver(event))
            task.add_done_callback(lambda t: t.exception())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
