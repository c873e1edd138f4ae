"""HTML5 workspaces: each session's web app behind an authenticated reverse proxy,
served from an origin of its own (DESIGN.md section 8).

**Dispatch.** `app_origin_middleware` runs right after the edge guard: a
request whose ``Host`` is under the apps domain (`broker.web.origins.AppOrigins`)
is handled here and never reaches the broker's routes (no ``/api``, no
``/viewer`` on an app origin); a host there that is not ``<session id>.<domain>``
gets 404. ``/__broker/`` is the sign-in's (`broker.web.signin`); every other
request needs the app cookie. Without it the answer is 401 (an HTML page for
browsers, JSON ``{"detail", "code"}`` otherwise; codes ``not_signed_in``,
``session_ended``) and the app is not contacted; so is a 503
``tunnel_not_ready`` while the session's grant is not recorded or is gone.

**Proxying** to ``http://<host>:<port>`` of `Session.connect_target`, the address
the tunnel grant gave (`protocols.http_upstream` has the header rules): every
method but CONNECT, bodies streamed both ways (uploads up to
``max_request_bytes``, else 413), redirects passed through with ``Location``s that
point at the app's own address rewritten to the app origin, hop-by-hop
headers stripped both ways, the broker cookie cut out of ``Cookie``,
``Authorization`` dropped when it holds a broker credential (a JWT for the
broker's issuer and audience, a viewer token, the app cookie), ``Host`` kept
as the browser sent it, ``X-Forwarded-For/Proto/Host`` set by the broker,
``Set-Cookie`` for the broker cookie's name dropped from answers and the
others made host-only (``Domain`` removed). WebSocket
upgrades are relayed both ways (text and binary; subprotocol negotiated
with the app; either side's close is passed on). An app that cannot be
reached is a 502 (504 when it does not answer in time) with a message.
Responses from ``/__broker/`` and the proxy's own error pages carry strict
security headers; the app's own responses pass as they are (it is its origin).
App-origin requests skip the broker's own middlewares (JSON errors, request
metrics, the portal's security headers), which would otherwise rewrite the
app's answers.

**Session end.** Requests after the end get 401 ``session_ended``. Every
request and WebSocket being proxied is a `ProxiedStream` in the broker's one
registry of open streams (`broker.core.streams`), so a session's end (its
event, or the reaper's sweep as a backstop for lost events between replicas)
ends them at once: proxied WebSockets close with code 4000, reason ``session
ended`` (the app's side with 1001), and streaming responses are cut off. On
broker shutdown (the streams end with ``DRAINING``) the code is 1001,
``broker shutting down``, and a request not answered yet gets 503.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from aiohttp import StreamReader, web
from multidict import CIMultiDict
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from yarl import URL

from broker.core.errors import (
    BadRequest,
    BrokerError,
    NotFound,
    Unauthorized,
    Unavailable,
)
from broker.core.models import ConnectTarget, Session
from broker.core.runtime import Broker
from broker.web.http import BROKER, Handler, client_ip
from broker.web.origins import AppOrigins
from broker.web.signin import RESERVED_PREFIX, SIGN_IN_HELP, AppSignIn, error_page
from protocols.http_upstream import (
    Forwarding,
    HttpUpstream,
    HttpUpstreamError,
    UpstreamTimeouts,
    body_chunks,
    close_quietly,
    relay,
    request_headers,
    response_headers,
)
from protocols.status import Ending, GuacamoleStatus

log = logging.getLogger(__name__)

T = TypeVar("T")

UPSTREAM_CODES = {502: "app_unreachable", 504: "app_timeout"}
# The WebSocket close a proxied browser gets: (code, reason).
SESSION_ENDED_CLOSE = (4000, "session ended")
SHUTDOWN_CLOSE = (1001, "broker shutting down")


# -- one proxied stream ------------------------------------------------------------


class StreamEnded(Exception):
    """The stream's session ended (or the broker is stopping) while it ran."""


class ProxiedStream:
    """One request or WebSocket being proxied: a `broker.core.streams.Stream`.
    `end` may come from anywhere; `run` is where the handler notices it."""

    def __init__(self) -> None:
        self._ended = asyncio.Event()
        self.ending: Ending | None = None

    def end(self, ending: Ending) -> None:
        if self.ending is None:
            self.ending = ending
            self._ended.set()

    @property
    def shutting_down(self) -> bool:
        """Ended because the broker stops (``DRAINING``), not the session."""
        return self.ending is not None and self.ending.status == GuacamoleStatus.SERVER_BUSY

    def close(self) -> tuple[int, str]:
        """The WebSocket close code and reason for the browser."""
        return SHUTDOWN_CLOSE if self.shutting_down else SESSION_ENDED_CLOSE

    def refusal(self) -> BrokerError:
        """The answer to a request ended before its response started."""
        if self.shutting_down:
            return Unavailable("The broker is shutting down; try again in a moment")
        return Unauthorized("This workspace session has ended", code="session_ended")

    async def run(self, work: Awaitable[T]) -> T:
        """``work``'s result; if the stream ends first, ``work`` is cancelled
        and `StreamEnded` raised."""
        task = asyncio.ensure_future(work)
        waiter = asyncio.ensure_future(self._ended.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            raise StreamEnded(self.close()[1])
        return task.result()


# -- the proxy -------------------------------------------------------------------


class WebProxy:
    """Serves every app origin: the sign-in endpoints and the proxy itself."""

    def __init__(self, broker: Broker, upstream: HttpUpstream | None = None) -> None:
        apps = broker.settings.apps
        self._broker = broker
        self._apps = apps
        self._streams = broker.streams
        self.origins = AppOrigins.from_settings(broker.settings)
        self.sign_in = AppSignIn(broker, self.origins)
        self._upstream = upstream or HttpUpstream(
            UpstreamTimeouts(apps.connect_timeout_seconds, apps.read_timeout_seconds),
            ws_max_message_bytes=apps.ws_max_message_bytes,
        )

    async def aclose(self) -> None:
        await self._upstream.aclose()

    async def handle(self, request: web.Request, session_id: str) -> web.StreamResponse:
        """Answer a request on an app origin; ``session_id`` is "" for a host
        in the apps domain that is no session's."""
        try:
            if not session_id:
                raise NotFound("There is no workspace at this address")
            if request.path.startswith(RESERVED_PREFIX):
                return await self.sign_in.handle(request, session_id)
            if request.method == "CONNECT":
                return error_page(request, 405, "Method not allowed", "method_not_allowed")
            session = await self.sign_in.signed_in(request, session_id)
            _require_open_path(session)
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return await self._proxy_websocket(request, session)
            return await self._proxy_http(request, session)
        except BrokerError as exc:
            detail = SIGN_IN_HELP.get(exc.code, exc.detail)
            return error_page(request, exc.status, detail, exc.code)
        except HttpUpstreamError as exc:
            log.warning("session %s: %s", session_id, exc.message)
            status = exc.status.http_status
            detail = f"The workspace's web app is not available: {exc.message}."
            return error_page(request, status, detail, UPSTREAM_CODES.get(status, "app_error"))
        except (OperationalError, PoolTimeout, DBAPIError):
            log.warning("database unavailable while serving an app origin")
            return error_page(
                request, 503, "Database unavailable, try again shortly", "database_unavailable"
            )

    # -- proxying ------------------------------------------------------------------

    def _upstream_url(self, session: Session, request: web.Request) -> URL:
        target = _require_open_path(session)
        base = URL.build(scheme="http", host=target.host, port=target.port)
        return URL(str(base) + request.rel_url.raw_path_qs, encoded=True)

    async def _headers_for_app(
        self, request: web.Request, *, websocket: bool = False
    ) -> CIMultiDict[str]:
        trusted = self._broker.settings.server.trusted_proxies
        forwarding = Forwarding(client_ip(request, trusted), self.origins.scheme, request.host)
        return request_headers(
            request.headers,
            host=request.host,
            forwarding=forwarding,
            drop_cookies=self.sign_in.reserved_cookies,
            drop_authorization=await self._broker_credential(request),
            websocket=websocket,
        )

    async def _broker_credential(self, request: web.Request) -> bool:
        """Whether ``Authorization`` carries something of the broker's, which
        the app must never see."""
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            return False
        return await self._broker.credentials.is_broker_credential(
            value, self.sign_in.cookie_values(request)
        )

    async def _proxy_http(self, request: web.Request, session: Session) -> web.StreamResponse:
        limit = self._apps.max_request_bytes
        if request.content_length is not None and request.content_length > limit:
            return error_page(request, 413, "Request body too large", "request_too_large")
        url = self._upstream_url(session, request)
        headers = await self._headers_for_app(request)
        upload = _Upload(request.content, limit) if request.body_exists else None
        public = self.origins.origin(session.id, request.host)
        started: list[web.StreamResponse] = []

        async def forward() -> web.StreamResponse:
            body = upload.chunks() if upload else None
            answer = await self._upstream.open(request.method, url, headers, body)
            try:
                resp = web.StreamResponse(status=answer.status, reason=answer.reason)
                resp.headers.extend(
                    response_headers(
                        answer.headers,
                        upstream=url.origin(),
                        public_origin=public,
                        reserved_cookies=self.sign_in.reserved_cookies,
                    )
                )
                started.append(resp)
                try:
                    await resp.prepare(request)
                    async for chunk in body_chunks(answer):
                        await resp.write(chunk)
                    await resp.write_eof()
                except ConnectionError:
                    return resp  # the browser left; aiohttp drops the connection quietly
                answer.release()
                return resp
            finally:
                answer.close()

        stream = ProxiedStream()
        with self._streams.holding(session.id, stream):
            try:
                return await stream.run(forward())
            except StreamEnded:
                if not started:
                    raise stream.refusal() from None
                return _cut_off(request, started[0])
            except HttpUpstreamError as exc:
                if upload is not None and upload.too_large:
                    return error_page(request, 413, "Request body too large", "request_too_large")
                if not started:
                    raise
                log.warning("session %s: %s", session.id, exc.message)
                return _cut_off(request, started[0])

    async def _proxy_websocket(self, request: web.Request, session: Session) -> web.StreamResponse:
        if not web.WebSocketResponse().can_prepare(request).ok:
            raise BadRequest("Not a valid WebSocket handshake")
        # A sibling app's origin (same site: the cookie would ride along) was
        # refused already by broker.web.guard, which checks every WebSocket Origin.
        url = self._upstream_url(session, request)
        headers = await self._headers_for_app(request, websocket=True)
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        protocols = tuple(p.strip() for p in offered.split(",") if p.strip())
        stream = ProxiedStream()
        with self._streams.holding(session.id, stream):
            try:
                app_ws = await stream.run(self._upstream.websocket(url, headers, protocols))
            except StreamEnded:
                raise stream.refusal() from None
            browser = web.WebSocketResponse(
                protocols=(app_ws.protocol,) if app_ws.protocol else (),
                max_msg_size=self._apps.ws_max_message_bytes,
            )
            try:
                await browser.prepare(request)
                try:
                    await stream.run(relay(browser, app_ws))
                except StreamEnded:
                    code, reason = stream.close()
                    await asyncio.gather(
                        close_quietly(app_ws, 1001, reason),
                        close_quietly(browser, code, reason),
                    )
                return browser
            finally:
                # Also when this handler is cancelled because the browser left:
                # the app hears the browser's own close code when there was one.
                await close_quietly(app_ws, browser.close_code or 1001, "")


class _Upload:
    """The request body as it arrives, refused past ``limit`` bytes."""

    def __init__(self, content: StreamReader, limit: int) -> None:
        self._content = content
        self._limit = limit
        self.too_large = False

    async def chunks(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._content.iter_any():
            seen += len(chunk)
            if seen > self._limit:
                self.too_large = True
                raise HttpUpstreamError("the request body is larger than allowed")
            yield chunk


def _require_open_path(session: Session) -> ConnectTarget:
    """The session's connect target; refused when the tunnel grant is not
    recorded yet (there is no target) or is gone."""
    target = session.connect_target
    if target is None:
        raise Unavailable(
            "The network path to this workspace is not open; try again in a moment",
            code="tunnel_not_ready",
        )
    return target


def _cut_off(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
    """End a response whose headers went out already: drop the connection, so
    the browser sees an incomplete body rather than a complete-looking one."""
    resp.force_close()
    if request.transport is not None:
        request.transport.close()
    return resp


# -- wiring --------------------------------------------------------------------------

WEBPROXY: web.AppKey[WebProxy] = web.AppKey("webproxy", WebProxy)


@web.middleware
async def app_origin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """App origins are answered here; every other host goes on to the broker.
    ``create_app`` puts it right after the guard, ahead of the broker's own."""
    proxy = request.app.get(WEBPROXY)
    session_id = proxy.origins.session_of(request.host) if proxy is not None else None
    if proxy is None or session_id is None:
        return await handler(request)
    return await proxy.handle(request, session_id)


async def lifetime(app: web.Application) -> AsyncIterator[None]:
    """The proxy, as a cleanup context: register it after the broker's (it
    needs `BROKER`). Its open streams are ended by the broker's shutdown hook."""
    proxy = WebProxy(app[BROKER])
    app[WEBPROXY] = proxy
    try:
        yield
    finally:
        await proxy.aclose()
