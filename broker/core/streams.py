"""The viewer streams this broker holds, and how a session's end closes them.

A session's end reason decides the Guacamole status its viewers see
(DESIGN.md section 2): SUCCESS for the user's own disconnect, SESSION_TIMEOUT
for limits, SESSION_CLOSED for a stop or an admin, SERVER_BUSY while the broker
drains (the viewer may reconnect to another replica).
"""

from __future__ import annotations

import asyncio
import weakref

from broker.core.events import SessionEnded
from broker.web.relay import Ending, Relay
from protocols.status import GuacamoleStatus as S

ENDINGS: dict[str, Ending] = {
    "user_disconnect": Ending(S.SUCCESS),
    "idle_timeout": Ending(S.SESSION_TIMEOUT, "The session was idle for too long"),
    "max_duration": Ending(S.SESSION_TIMEOUT, "The session reached its maximum duration"),
    "workspace_stop": Ending(S.SESSION_CLOSED, "The workspace was stopped"),
    "admin_terminate": Ending(S.SESSION_CLOSED, "An administrator ended the session"),
}
DEFAULT_ENDING = Ending(S.SESSION_CLOSED, "The session was ended")
DRAINING = Ending(S.SERVER_BUSY, "The broker is restarting; reconnect to continue")


def ending_for(reason: str) -> Ending:
    return ENDINGS.get(reason, DEFAULT_ENDING)


class ViewerRegistry:
    """The relays this broker holds, by session, so a session's end closes them."""

    def __init__(self) -> None:
        self._relays: dict[str, weakref.WeakSet[Relay]] = {}
        self._empty = asyncio.Event()
        self._empty.set()

    def add(self, session_id: str, relay: Relay) -> None:
        self._relays.setdefault(session_id, weakref.WeakSet()).add(relay)
        self._empty.clear()

    def remove(self, session_id: str, relay: Relay) -> None:
        relays = self._relays.get(session_id)
        if relays is not None:
            relays.discard(relay)
            if not relays:
                del self._relays[session_id]
        if not self._relays:
            self._empty.set()

    async def wait_empty(self) -> None:
        """Return once no stream is held."""
        await self._empty.wait()

    def count(self) -> int:
        return sum(len(r) for r in self._relays.values())

    def session_ids(self) -> list[str]:
        return list(self._relays)

    def end_session(self, session_id: str, ending: Ending) -> int:
        relays = list(self._relays.get(session_id, ()))
        for relay in relays:
            relay.end(ending)
        return len(relays)

    def end_all(self, ending: Ending) -> int:
        return sum(self.end_session(sid, ending) for sid in self.session_ids())

    async def on_session_ended(self, event: SessionEnded) -> None:
        self.end_session(event.session_id, ending_for(event.reason))
