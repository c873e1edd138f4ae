"""The guacd pool: which configured guacd daemons are healthy, and which one a
new connection goes to.

- Health: `GuacdPool.check_all` runs a real handshake against each endpoint
  (``select,vnc``, guacd answers ``args``; then the probe leaves), not only a
  TCP connect. The broker runs it in the background; an endpoint is healthy
  from a passing check until a check or a connection on it fails.
- Choice: a new connection goes to the healthy endpoint with the fewest live
  connections (ties: the configured order). One that fails before ``ready``
  is marked unhealthy and skipped until a check passes again, and the next
  healthy one is tried (failover before ``ready`` only, `protocols.guacd`).
  None healthy: `NoGuacdAvailable` at once.
- Live connections: the pool counts them per endpoint and knows, for each,
  its endpoint, guacd's connection id (from ``ready``) and the tag the caller
  gave (the broker's session id), in memory: `live` answers "where does this
  session's connection run", `connect_on` opens one on a given endpoint (a
  read-only viewer joins a live connection with ``select,$<id>`` there).

Before its first check an endpoint is *unknown*: connections may try it (as
configured), `healthy` says False. With ``recheck=False`` (no background
checks) nothing is ever marked unhealthy: every endpoint is always tried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from protocols.errors import GuacdError, GuacdUnreachable, NoGuacdAvailable
from protocols.guacd import (
    ConnectionRequest,
    GuacdConnection,
    GuacdEndpoint,
    GuacdTimeouts,
    open_connection,
    probe,
)
from protocols.guacd_args import RemoteProtocol

log = logging.getLogger(__name__)


@dataclass(slots=True)
class EndpointHealth:
    """What the pool knows of one endpoint. ``healthy`` is None before the
    first check; ``failures`` counts failed checks and failed connections."""

    endpoint: GuacdEndpoint
    healthy: bool | None = None
    live: int = 0
    failures: int = 0
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class LiveConnection:
    """One open guacd connection of the pool (``connection_id`` is a join
    capability: never shown to a browser)."""

    endpoint: GuacdEndpoint
    connection_id: str = field(repr=False)
    tag: str | None


class GuacdPool:
    """Connections to the least-loaded healthy guacd; see the module docstring."""

    def __init__(
        self,
        endpoints: Sequence[GuacdEndpoint],
        *,
        timeouts: GuacdTimeouts | None = None,
        recheck: bool = True,
        probe: RemoteProtocol = RemoteProtocol.VNC,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one guacd endpoint is needed")
        self._states = [EndpointHealth(e) for e in endpoints]
        self._timeouts = timeouts or GuacdTimeouts()
        self._recheck = recheck
        self._probe = probe
        self._live: dict[GuacdConnection, LiveConnection] = {}
        self._changed = asyncio.Event()

    @property
    def endpoints(self) -> tuple[GuacdEndpoint, ...]:
        return tuple(s.endpoint for s in self._states)

    @property
    def checks(self) -> bool:
        """Whether endpoints are health-checked (else all are always tried)."""
        return self._recheck

    def states(self) -> list[EndpointHealth]:
        """A snapshot of each endpoint's health, in the configured order."""
        return [
            EndpointHealth(s.endpoint, s.healthy, s.live, s.failures, s.last_error)
            for s in self._states
        ]

    def healthy(self) -> bool:
        """Whether some endpoint passed its last check (always True without checks)."""
        return not self._recheck or any(s.healthy for s in self._states)

    def available(self) -> bool:
        """Whether a new connection has an endpoint to try: one healthy or
        not yet checked. False means a launch should fail fast."""
        return not self._recheck or any(s.healthy is not False for s in self._states)

    def live(self, tag: str | None = None) -> list[LiveConnection]:
        """The open connections (of ``tag`` only, when given)."""
        return [c for c in self._live.values() if tag is None or c.tag == tag]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Return once ``predicate()`` holds, re-checked after each change of
        health or load. Raises ``TimeoutError``."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    # -- connecting ----------------------------------------------------------

    async def connect(
        self, request: ConnectionRequest, *, tag: str | None = None
    ) -> GuacdConnection:
        """Connect on the least-loaded healthy endpoint, failing over to the
        next on a failure before ``ready``. Raises `NoGuacdAvailable`."""
        candidates = sorted(
            (s for s in self._states if not self._recheck or s.healthy is not False),
            key=lambda s: s.live,  # sorted() is stable: ties keep the configured order
        )
        if not candidates:  # fail fast: each failed its last check
            raise NoGuacdAvailable((GuacdUnreachable("none passed its last health check"),))
        attempts: list[GuacdError] = []
        for state in candidates:
            try:
                return await self._open(state, request, tag)
            except GuacdError as exc:
                log.warning(
                    "guacd %s failed before ready (%s, status %d)",
                    state.endpoint,
                    type(exc).__name__,
                    exc.status,
                )
                attempts.append(exc)
        raise NoGuacdAvailable(tuple(attempts))

    async def connect_on(
        self, endpoint: GuacdEndpoint, request: ConnectionRequest, *, tag: str | None = None
    ) -> GuacdConnection:
        """Connect on ``endpoint`` (one of the pool's), whatever its load or
        health: joining a live connection (``request.join``) works only on the
        guacd that holds it. No failover; raises `GuacdError`."""
        for state in self._states:
            if state.endpoint == endpoint:
                return await self._open(state, request, tag)
        raise ValueError(f"guacd {endpoint} is not in the pool")

    async def _open(
        self, state: EndpointHealth, request: ConnectionRequest, tag: str | None
    ) -> GuacdConnection:
        try:
            connection = await open_connection(state.endpoint, request, timeouts=self._timeouts)
        except GuacdError as exc:
            self._failed(state, exc)
            raise
        state.live += 1
        self._live[connection] = LiveConnection(state.endpoint, connection.connection_id, tag)
        connection.on_close.append(lambda: self._released(state, connection))
        self._changed.set()
        return connection

    def _released(self, state: EndpointHealth, connection: GuacdConnection) -> None:
        if self._live.pop(connection, None) is not None:
            state.live -= 1
            self._changed.set()

    def _failed(self, state: EndpointHealth, exc: GuacdError) -> None:
        state.failures += 1
        state.last_error = str(exc)
        if self._recheck:
            if state.healthy is not False:
                log.warning("guacd %s marked unhealthy: %s", state.endpoint, exc)
            state.healthy = False
        self._changed.set()

    # -- health checks -------------------------------------------------------

    async def check_all(self) -> None:
        """Check every endpoint at once (each bounded by the timeouts)."""
        await asyncio.gather(*(self._check(s) for s in self._states))

    async def _check(self, state: EndpointHealth) -> None:
        try:
            await probe(state.endpoint, self._probe, self._timeouts)
        except GuacdError as exc:
            self._failed(state, exc)
            return
        if state.healthy is not True:
            log.info("guacd %s is healthy", state.endpoint)
        state.healthy, state.last_error = True, None
        self._changed.set()
