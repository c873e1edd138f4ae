"""Session events between replicas over PostgreSQL ``LISTEN/NOTIFY``.

`PgEventBus` is an `EventBus`: local listeners are called as before, and every
event is also sent with ``NOTIFY`` on one channel. Each replica keeps one
connection ``LISTEN``-ing on it and hands events from other replicas to its
own listeners, so the replica holding a session's viewer stream closes it
within moments of another replica ending the session.

A lost notification (the listening connection dropped, the database
restarted) only delays the close until the reaper's sweep, which checks every
held stream against the database. The listening connection is re-opened with
backoff; `aclose` stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.core.events import EventBus, SessionEnded

log = logging.getLogger(__name__)

CHANNEL = "broker_session_events"


class PgEventBus(EventBus):
    def __init__(self, engine: AsyncEngine, *, reconnect_seconds: float = 2.0) -> None:
        super().__init__()
        self._engine = engine
        self._dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._origin = uuid.uuid4().hex  # this replica, to skip its own notifications
        self._reconnect = reconnect_seconds
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self.listening = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="pg-events")

    async def publish(self, event: SessionEnded) -> None:
        await super().publish(event)
        payload = json.dumps({"o": self._origin, "s": event.session_id, "r": event.reason})
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    text("SELECT pg_notify(:channel, :payload)"),
                    {"channel": CHANNEL, "payload": payload},
                )
        except (OSError, SQLAlchemyError, TimeoutError) as exc:
            # Other replicas will notice at their next sweep.
            log.warning("could not notify other replicas: %s", type(exc).__name__)

    async def _listen_forever(self) -> None:
        while True:
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("replica events: listener lost (%s), reconnecting", type(exc).__name__)
            self.listening.clear()
            await asyncio.sleep(self._reconnect)

    async def _listen_once(self) -> None:
        conn = await asyncpg.connect(self._dsn, timeout=10)
        self._conn = conn
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
            self.listening.set()
            await lost.wait()
        finally:
            self._conn = None
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            data = json.loads(payload)
            event = SessionEnded(str(data["s"]), str(data["r"]))
            origin = data["o"]
        except (ValueError, KeyError, TypeError):
            return
        if origin != self._origin:
            task = asyncio.ensure_future(EventBus.publish(self, event))
            task.add_done_callback(lambda t: t.exception())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
