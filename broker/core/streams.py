"""The streams this broker holds open, by session, and how a session's end closes them.

A stream is whatever a session's end must cut: a guacd viewer's relay, a
request or WebSocket the HTML5 proxy is serving. Each registers in the one
`OpenStreams` of the broker while it runs, so that

- a `SessionEnded` event ends the session's streams at once (`on_session_ended`),
- the reaper's sweep ends those whose session ended elsewhere (a lost event),
  and marks the sessions held here as watched (the idle-without-viewer clock),
- shutdown and drain end them all with `DRAINING` and wait for them to go.

A session's end reason decides the Guacamole status its streams see
(DESIGN.md section 2): SUCCESS for the user's own disconnect, SESSION_TIMEOUT
for limits, SESSION_CLOSED for a stop or an admin, SERVER_BUSY while the broker
drains (the viewer may reconnect to another replica). Each kind of stream maps
that `Ending` to its own wire (the relay: the status itself; the HTML5 proxy:
its own WebSocket close codes).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from broker.core.events import SessionEnded
from protocols.status import Ending
from protocols.status import GuacamoleStatus as S

log = logging.getLogger(__name__)

ENDINGS: dict[str, Ending] = {
    "user_disconnect": Ending(S.SUCCESS),
    "idle_timeout": Ending(S.SESSION_TIMEOUT, "The session was idle for too long"),
    "max_duration": Ending(S.SESSION_TIMEOUT, "The session reached its maximum duration"),
    "workspace_stop": Ending(S.SESSION_CLOSED, "The workspace was stopped"),
    "admin_terminate": Ending(S.SESSION_CLOSED, "An administrator ended the session"),
    "connect_failed": Ending(
        S.SESSION_CLOSED, "The remote desktop could not be reached, so the session was ended"
    ),
}
DEFAULT_ENDING = Ending(S.SESSION_CLOSED, "The session was ended")
DRAINING = Ending(S.SERVER_BUSY, "The broker is restarting; reconnect to continue")


def ending_for(reason: str) -> Ending:
    """The `Ending` a session's streams get for its end reason."""
    return ENDINGS.get(reason, DEFAULT_ENDING)


class Stream(Protocol):
    """One open stream of a session."""

    def end(self, ending: Ending) -> None:
        """Make the stream stop soon with ``ending`` (the first call wins). Called
        from event handlers and sweeps: must return at once and never raise."""


# How long the registry remembers a session's end it was told of: longer than
# a stream takes from its session check to `add` (a guacd handshake, bounded
# by its timeouts). Session ids are never reused, so remembering is safe.
ENDED_MEMORY_SECONDS = 120.0


class OpenStreams:
    """The open streams, by session id. Streams are held weakly: one that is
    dropped without `remove` disappears by itself.

    A stream added for a session whose end the registry was told of lately
    (`on_session_ended`) is ended at once: a viewer that checked its session,
    then spent a guacd handshake before `add`, needs no second read of the
    session to learn that it ended in between."""

    def __init__(self) -> None:
        self._open: dict[str, weakref.WeakSet[Stream]] = {}
        self._empty = asyncio.Event()
        self._empty.set()
        # session id -> (when told, its ending), oldest first
        self._ended: dict[str, tuple[float, Ending]] = {}

    def add(self, session_id: str, stream: Stream) -> None:
        self._open.setdefault(session_id, weakref.WeakSet()).add(stream)
        self._empty.clear()
        ended = self._ended.get(session_id)
        if ended is not None:
            stream.end(ended[1])

    def remove(self, session_id: str, stream: Stream) -> None:
        streams = self._open.get(session_id)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._open[session_id]
        if not self._open:
            self._empty.set()

    @contextmanager
    def holding(self, session_id: str, stream: Stream) -> Iterator[None]:
        """`add` for the ``with`` block, `remove` after it, however it ends."""
        self.add(session_id, stream)
        try:
            yield
        finally:
            self.remove(session_id, stream)

    async def wait_empty(self) -> None:
        """Return once no stream is held."""
        await self._empty.wait()

    def count(self) -> int:
        return sum(len(s) for s in self._open.values())

    def session_ids(self) -> list[str]:
        """The sessions with at least one stream held here."""
        return list(self._open)

    def of(self, session_id: str) -> list[Stream]:
        """The streams of ``session_id`` held now."""
        return list(self._open.get(session_id, ()))

    def end_session(self, session_id: str, ending: Ending) -> int:
        """End every stream of ``session_id``; how many there were. The streams
        leave the registry as they finish, not here."""
        streams = self.of(session_id)
        for stream in streams:
            stream.end(ending)
        return len(streams)

    def end_all(self, ending: Ending) -> int:
        return sum(self.end_session(sid, ending) for sid in self.session_ids())

    async def on_session_ended(self, event: SessionEnded) -> None:
        """The `EventBus` subscriber: the session's streams end with its reason
        (and streams added for it later, see the class docstring)."""
        ending = ending_for(event.reason)
        self._remember(event.session_id, ending)
        if ended := self.end_session(event.session_id, ending):
            log.info("session %s ended: closing %d stream(s)", event.session_id, ended)

    def _remember(self, session_id: str, ending: Ending) -> None:
        now = time.monotonic()
        self._ended.pop(session_id, None)
        self._ended[session_id] = (now, ending)
        while self._ended:
            oldest = next(iter(self._ended))
            if now - self._ended[oldest][0] < ENDED_MEMORY_SECONDS:
                break
            del self._ended[oldest]
