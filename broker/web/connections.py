"""Slow clients: bounded time and number of connections per address whose
request headers are still incomplete (slowloris).

aiohttp has no timeout for request headers (its keep-alive timer starts
only once per connection), so a client sending a header byte now and then
holds its connection, and a few hundred of them hold the broker's file
descriptors. `EdgeRunner` serves the app with a request handler that knows
when a connection is *waiting for headers*: from the moment it opens, and
again from the first byte of each next request, until that request's
headers are complete. Such a connection:

- is closed if its headers are not complete within
  ``server.header_timeout_seconds``;
- counts against its address (an IPv6 client's /64), which may hold at most
  ``server.max_pending_headers_per_ip`` of them: one more is closed at once.
  Peers in ``server.trusted_proxies`` are not counted (their clients are
  many), the timeout applies to them too.

Idle keep-alive connections between requests (e.g. a reverse proxy's pool)
are not waiting for headers and do not count; aiohttp's keep-alive timeout
ends them. Neither do connections whose request is being handled (a body
upload, a WebSocket).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from broker.config.server import ServerSettings
from broker.web.http import in_networks
from broker.web.ratelimit import address_key

log = logging.getLogger(__name__)


class SlowClients:
    """The count of connections waiting for headers, per address key."""

    def __init__(self, settings: ServerSettings) -> None:
        self.timeout = settings.header_timeout_seconds
        self.limit = settings.max_pending_headers_per_ip
        self._trusted = settings.trusted_proxies
        self._pending: Counter[str] = Counter()
        self.timed_out = 0
        self.refused = 0

    def key_of(self, peer: str | None) -> str | None:
        """The key ``peer`` counts under; None for trusted proxies (not counted)."""
        if peer is None or in_networks(peer, self._trusted):
            return None
        return address_key(peer)

    def acquire(self, key: str | None) -> bool:
        """Count one more waiting connection of ``key``; False when it is at
        its limit already (nothing counted then)."""
        if key is None:
            return True
        if self._pending[key] >= self.limit:
            self.refused += 1
            return False
        self._pending[key] += 1
        return True

    def release(self, key: str | None) -> None:
        if key is None:
            return
        self._pending[key] -= 1
        if self._pending[key] <= 0:
            del self._pending[key]

    def pending(self, peer: str) -> int:
        return self._pending.get(address_key(peer), 0)


class _Handler(RequestHandler):
    """aiohttp's request handler, closing connections whose headers are late."""

    def __init__(self, clients: SlowClients, manager: Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._clients = clients
        self._key: str | None = None
        self._waiting = False
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self._key = self._clients.key_of(peer[0] if isinstance(peer, tuple) else None)
        self._wait_for_headers()

    def data_received(self, data: bytes) -> None:
        requests = self._request_count
        super().data_received(data)
        if self._request_count > requests:
            self._stop_waiting()  # headers complete: the request is being handled
        elif data and not self._waiting and self._idle():
            self._wait_for_headers()  # the first bytes of the next request

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _idle(self) -> bool:
        """Between requests: nothing being handled or queued."""
        return self._current_request is None and not self._messages and not self._upgraded

    def _wait_for_headers(self) -> None:
        if not self._clients.acquire(self._key):
            log.info("too many connections waiting for headers from %s: closed", self._key)
            self._close_now()
            return
        self._waiting = True
        self._deadline = self._loop.call_later(self._clients.timeout, self._headers_late)

    def _stop_waiting(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._waiting:
            self._waiting = False
            self._clients.release(self._key)

    def _headers_late(self) -> None:
        self._deadline = None
        if self._waiting:
            self._clients.timed_out += 1
            log.info("request headers not complete within %g s: closed", self._clients.timeout)
            self._stop_waiting()
            self._close_now()

    def _close_now(self) -> None:
        self.force_close()
        if self.transport is not None:
            self.transport.close()


class EdgeServer(Server):
    """aiohttp's low-level server, making `_Handler` s."""

    def __init__(self, original: Server, clients: SlowClients) -> None:
        super().__init__(
            original.request_handler,
            request_factory=original.request_factory,
            handler_cancellation=original.handler_cancellation,
            **original._kwargs,
        )
        self.clients = clients

    def __call__(self) -> RequestHandler:
        return _Handler(self.clients, self, loop=self._loop, **self._kwargs)


class EdgeRunner(web.AppRunner):
    """`web.AppRunner` whose connections are guarded against slow clients;
    what ``broker serve`` runs (the tests' brokers too)."""

    def __init__(self, app: web.Application, settings: ServerSettings, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.clients = SlowClients(settings)

    async def _make_server(self) -> Server:
        return EdgeServer(await super()._make_server(), self.clients)
