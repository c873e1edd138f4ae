"""Session events between the parts of one broker (and, later, between replicas).

The session state machine announces `SessionEnded` inside the transaction
that ends the session (other replicas hear of it on commit, and only then)
and delivers it to this replica's listeners after the commit; the viewer
relay subscribes to close the stream it holds. Delivery is in-process here;
`broker.core.pgevents` carries it between replicas with PostgreSQL's
``LISTEN/NOTIFY``, with a periodic sweep covering lost events.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from broker.core.db import DbSession

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SessionEnded:
    session_id: str
    reason: str


Listener = Callable[[SessionEnded], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class BusState:
    """How delivery from other replicas stands, for readiness and metrics.

    ``down_since`` is when this replica stopped hearing other replicas (or
    started without hearing them yet); None while it hears them.
    ``disconnects`` counts the listening connections lost since start."""

    listening: bool
    down_since: datetime | None
    disconnects: int


class EventBus:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Register ``listener``; returns a function that unregisters it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def announce(self, db: DbSession, event: SessionEnded) -> None:
        """Inside the transaction that makes ``event`` true: tell the other
        replicas when it commits (and only if it does). Nothing to do when
        delivery is in-process; `deliver` follows the commit."""

    async def deliver(self, event: SessionEnded) -> None:
        """Deliver to this replica's listeners; one failing listener never
        stops the others."""
        for listener in list(self._listeners):
            try:
                await listener(event)
            except Exception:
                log.exception("session event listener failed")

    def state(self) -> BusState | None:
        """None: delivery is in-process and cannot be lost."""
        return None
