"""HTML5 workspaces: each session's web app behind an authenticated reverse proxy,
served from an origin of its own (DESIGN.md section 8).

**Origins.** ``[apps] origin_template`` turns a session id into an origin:
``http://{session}.localhost:{port}`` locally (Chromium resolves
``*.localhost`` to loopback; ``{port}`` is the port the browser reached the
broker on, taken from the request's ``Host``, else ``server.port``), or
``https://{session}.apps.example.com`` in production (a wildcard DNS name and
certificate for the broker). `app_origin_middleware` runs before everything
else: a request whose ``Host`` is under the apps domain is handled here and
never reaches the broker's routes (no ``/api``, no ``/viewer`` on an app
origin); a host there that is not ``<session id>.<domain>`` gets 404.

**Signing in** (the viewer token only ever travels in URL fragments, which
browsers never send, and in one POST body):

1. The viewer page ``/viewer/<id>#token=<viewer token>`` learns ``app_url``
   from ``GET /viewer/<id>/info`` (`app_entry_url`, e.g.
   ``http://<id>.localhost:8080/__broker/enter``; this module sets
   ``Broker.app_url``) and goes to ``<app_url>#token=<viewer token>``.
2. ``GET /__broker/enter`` is a small page whose script
   (``/__broker/enter.js``; CSP ``script-src 'self'``, no inline script)
   takes the token out of the address bar and history, POSTs
   ``{"token": "..."}`` (``Content-Type: application/json``) to
   ``/__broker/session`` and, on success, replaces itself with ``/``.
3. ``POST /__broker/session`` refuses cross-origin calls (``Origin``,
   ``Sec-Fetch-Site``), checks the token belongs to this origin's session,
   which must be active and of type html5, marks the token exchanged (once
   only: a replay is refused unless it carries a valid cookie already, as a
   reload does), stores a fresh random credential hashed, and answers 200
   ``{"session_id", "location": "/"}`` with
   ``Set-Cookie: broker_app=<random>; Path=/; HttpOnly; SameSite=Lax``
   (name and SameSite from ``[apps]``; on an https origin also ``Secure``
   and the name gets the ``__Host-`` prefix, so no sibling origin can set it;
   no ``Domain``, no expiry: the server side ends with the session).
4. Every other request on the origin needs that cookie, checked against the
   database each time (its session must still be active). Without it the
   answer is 401 (an HTML page for browsers, JSON ``{"detail", "code"}``
   otherwise; codes ``not_signed_in``, ``session_ended``) and the app is not
   contacted; so is a 503 ``tunnel_not_ready`` while the session's grant is
   not recorded or is gone. ``/__broker/`` is reserved: nothing under it is
   proxied.

**Proxying** to ``http://<session.ip_address>:<session.port>``, the address
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

**Session end.** Requests after the end get 401 ``session_ended``. Streams
open at that moment end at once: on `SessionEnded` (and, as a backstop for
lost events between replicas, on a sweep every ``sweep_seconds``) proxied
WebSockets close with code 4000, reason ``session ended`` (the app's side
with 1001), and streaming responses are cut off. On broker shutdown the
code is 1001, ``broker shutting down``.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import TypeVar

from aiohttp import StreamReader, web
from multidict import CIMultiDict
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from yarl import URL

from broker.config import Settings, parse_origin_template
from broker.core.background import Periodic
from broker.core.errors import (
    BadRequest,
    BrokerError,
    Forbidden,
    NotFound,
    Unauthorized,
    Unavailable,
)
from broker.core.events import SessionEnded
from broker.core.models import Session, SessionStatus
from broker.core.runtime import Broker
from broker.core.sessions import UNKNOWN_IP, looks_like_session_id
from broker.web.http import BROKER, Handler, client_ip
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
from tunnels.base import TunnelStatus

log = logging.getLogger(__name__)

T = TypeVar("T")

RESERVED_PREFIX = "/__broker/"
ENTRY_PATH = "/__broker/enter"
ENTRY_SCRIPT_PATH = "/__broker/enter.js"
EXCHANGE_PATH = "/__broker/session"
MAX_EXCHANGE_BODY = 4096

OWN_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}

SIGN_IN_HELP = {
    "not_signed_in": "You are not signed in to this workspace. Open it from the portal.",
    "session_ended": (
        "This workspace session has ended. Launch the workspace again from the portal."
    ),
    "token_used": (
        "This link to the workspace was already used. Open the workspace again from the portal."
    ),
}
UPSTREAM_CODES = {502: "app_unreachable", 504: "app_timeout"}


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """Why open streams are being ended, and the WebSocket close the browser gets."""

    code: int
    reason: str


SESSION_ENDED = StreamEnd(4000, "session ended")
SHUTTING_DOWN = StreamEnd(1001, "broker shutting down")


# -- origins ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppOrigins:
    """The apps domain from ``[apps] origin_template``."""

    scheme: str
    domain: str  # ".localhost": what follows the session id
    port: str  # "", digits, or "{port}"
    fallback_port: int  # server.port, for "{port}" when the Host has none

    @classmethod
    def from_settings(cls, settings: Settings) -> AppOrigins:
        scheme, domain, port = parse_origin_template(settings.apps.origin_template)
        return cls(scheme, domain, port, settings.server.port)

    @property
    def secure(self) -> bool:
        return self.scheme == "https"

    def session_of(self, host: str) -> str | None:
        """The session id when ``host`` (a ``Host`` header) is under the apps
        domain: "" for a host there that is no session's origin; None when it
        is not an app host at all."""
        name = _split_host(host)[0].lower().rstrip(".")
        if not name.endswith(self.domain):
            return None
        session_id = name[: -len(self.domain)]
        return session_id if looks_like_session_id(session_id) else ""

    def origin(self, session_id: str, request_host: str) -> str:
        """The origin of ``session_id``'s app, for a browser that reached the
        broker at ``request_host``."""
        port = self.port
        if port == "{port}":
            port = _split_host(request_host)[1] or str(self.fallback_port)
        default = "443" if self.secure else "80"
        suffix = f":{port}" if port and port != default else ""
        return f"{self.scheme}://{session_id}{self.domain}{suffix}"


def app_origin(settings: Settings, session_id: str, request_host: str) -> str:
    """``session_id``'s app origin, e.g. ``http://<id>.localhost:8080``."""
    return AppOrigins.from_settings(settings).origin(session_id, request_host)


def app_entry_url(settings: Settings, session_id: str, request_host: str) -> str:
    """Where a viewer of an html5 session goes, e.g.
    ``http://<id>.localhost:8080/__broker/enter``; ``request_host`` is the
    ``Host`` the browser used for the broker. Append ``#token=<viewer token>``
    in the browser (never server-side: fragments stay out of logs)."""
    return app_origin(settings, session_id, request_host) + ENTRY_PATH


def _split_host(host: str) -> tuple[str, str]:
    """``Host`` header → (name, port or "")."""
    if host.startswith("["):
        end = host.find("]")
        name, rest = host[: end + 1], host[end + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = host.partition(":")
    return name, port if port.isdigit() else ""


def _same_origin(origin: str, scheme: str, host: str) -> bool:
    try:
        given, expected = URL(origin), URL(f"{scheme}://{host}")
    except ValueError:
        return False
    return given.is_absolute() and (given.scheme, given.host, given.port) == (
        expected.scheme,
        expected.host,
        expected.port,
    )


# -- open streams ----------------------------------------------------------------


class StreamEnded(Exception):
    """The stream's session ended (or the broker is stopping) while it ran."""


class Ending:
    """Set when the session behind one open request or WebSocket ends."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.why = SESSION_ENDED

    def set(self, why: StreamEnd) -> None:
        if not self._event.is_set():
            self.why = why
            self._event.set()

    async def run(self, work: Awaitable[T]) -> T:
        """``work``'s result; if this ending comes first, ``work`` is cancelled
        and `StreamEnded` raised."""
        task = asyncio.ensure_future(work)
        waiter = asyncio.ensure_future(self._event.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            raise StreamEnded(self.why.reason)
        return task.result()


class OpenStreams:
    """The requests and WebSockets being proxied, by session."""

    def __init__(self) -> None:
        self._open: dict[str, set[Ending]] = {}

    @contextmanager
    def track(self, session_id: str) -> Iterator[Ending]:
        ending = Ending()
        self._open.setdefault(session_id, set()).add(ending)
        try:
            yield ending
        finally:
            endings = self._open.get(session_id, set())
            endings.discard(ending)
            if not endings:
                self._open.pop(session_id, None)

    def end(self, session_id: str, why: StreamEnd) -> int:
        endings = self._open.get(session_id, set())
        for ending in endings:
            ending.set(why)
        return len(endings)

    def end_all(self, why: StreamEnd) -> None:
        for session_id in list(self._open):
            self.end(session_id, why)

    def session_ids(self) -> list[str]:
        return list(self._open)


# -- the proxy -------------------------------------------------------------------


class WebProxy:
    """Serves every app origin: the sign-in endpoints and the proxy itself."""

    def __init__(self, broker: Broker, upstream: HttpUpstream | None = None) -> None:
        apps = broker.settings.apps
        self._broker = broker
        self._apps = apps
        self.origins = AppOrigins.from_settings(broker.settings)
        self.cookie_name = ("__Host-" if self.origins.secure else "") + apps.cookie_name
        self._reserved_cookies = {apps.cookie_name, "__Host-" + apps.cookie_name}
        self._upstream = upstream or HttpUpstream(
            UpstreamTimeouts(apps.connect_timeout_seconds, apps.read_timeout_seconds),
            ws_max_message_bytes=apps.ws_max_message_bytes,
        )
        self.streams = OpenStreams()

    async def aclose(self) -> None:
        await self._upstream.aclose()

    def entry_url(self, request: web.Request, session_id: str) -> str:
        return self.origins.origin(session_id, request.host) + ENTRY_PATH

    async def on_session_ended(self, event: SessionEnded) -> None:
        if self.streams.end(event.session_id, SESSION_ENDED):
            log.info("session %s ended: closing its proxied streams", event.session_id)

    async def sweep(self) -> None:
        """End streams whose session is no longer active (a lost event)."""
        for session_id in self.streams.session_ids():
            session = await self._broker.queries.get(session_id)
            if session is None or session.status != SessionStatus.ACTIVE:
                self.streams.end(session_id, SESSION_ENDED)

    # -- dispatch ----------------------------------------------------------------

    async def handle(self, request: web.Request, session_id: str) -> web.StreamResponse:
        """Answer a request on an app origin; ``session_id`` is "" for a host
        in the apps domain that is no session's."""
        try:
            if not session_id:
                raise NotFound("There is no workspace at this address")
            if request.path.startswith(RESERVED_PREFIX):
                return await self._own(request, session_id)
            if request.method == "CONNECT":
                return self._error(request, 405, "Method not allowed", "method_not_allowed")
            session = await self._signed_in(request, session_id)
            _require_open_path(session)
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return await self._proxy_websocket(request, session)
            return await self._proxy_http(request, session)
        except BrokerError as exc:
            detail = SIGN_IN_HELP.get(exc.code, exc.detail)
            return self._error(request, exc.status, detail, exc.code)
        except HttpUpstreamError as exc:
            log.warning("session %s: %s", session_id, exc.message)
            status = exc.status.http_status
            detail = f"The workspace's web app is not available: {exc.message}."
            return self._error(request, status, detail, UPSTREAM_CODES.get(status, "app_error"))
        except (OperationalError, PoolTimeout, DBAPIError):
            log.warning("database unavailable while serving an app origin")
            return self._error(
                request, 503, "Database unavailable, try again shortly", "database_unavailable"
            )

    def _error(self, request: web.Request, status: int, detail: str, code: str) -> web.Response:
        if "text/html" in request.headers.get("Accept", ""):
            title = html.escape(HTTPStatus(status).phrase)
            text = (
                '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
                f"<title>{title}</title>\n</head>\n<body>\n<h1>{title}</h1>\n"
                f'<p id="detail">{html.escape(detail)}</p>\n</body>\n</html>\n'
            )
            resp = web.Response(text=text, status=status, content_type="text/html")
        else:
            body = json.dumps({"detail": detail, "code": code})
            resp = web.Response(text=body, status=status, content_type="application/json")
        resp.headers.update(OWN_HEADERS)
        if status == 405 and request.path.startswith(RESERVED_PREFIX):
            resp.headers["Allow"] = "POST" if request.path == EXCHANGE_PATH else "GET, HEAD"
        return resp

    # -- /__broker/ ----------------------------------------------------------------

    async def _own(self, request: web.Request, session_id: str) -> web.StreamResponse:
        path, method = request.path, request.method
        if path == EXCHANGE_PATH:
            if method != "POST":
                return self._error(request, 405, "Method not allowed", "method_not_allowed")
            resp: web.StreamResponse = await self._exchange(request, session_id)
        elif path in (ENTRY_PATH, ENTRY_SCRIPT_PATH):
            if method not in ("GET", "HEAD"):
                return self._error(request, 405, "Method not allowed", "method_not_allowed")
            if path == ENTRY_PATH:
                resp = web.Response(text=ENTRY_PAGE, content_type="text/html")
            else:
                resp = web.Response(text=ENTRY_SCRIPT, content_type="text/javascript")
        else:
            raise NotFound("Not found")
        resp.headers.update(OWN_HEADERS)
        return resp

    async def _exchange(self, request: web.Request, session_id: str) -> web.Response:
        self._refuse_cross_origin(request)
        if request.content_type != "application/json":
            raise BadRequest("Send the viewer token as a JSON body", code="bad_content_type")
        token = await _token_from_body(request)
        credentials = self._broker.credentials
        cookies = self._cookie_values(request)
        if not token:
            session = await credentials.app_session(session_id, cookies)
            return _signed_in_response(session)
        cookie = secrets.token_urlsafe(32)
        try:
            session = await credentials.exchange_viewer_token(
                token,
                session_id,
                cookie,
                client_ip=client_ip(request, self._broker.settings.server.trusted_proxies),
            )
        except Unauthorized as exc:
            if exc.code != "token_used" or not cookies:
                raise
            # A reload of the entry page: fine if this browser is signed in already.
            session = await credentials.app_session(session_id, cookies)
            return _signed_in_response(session)
        log.info("session %s: app cookie issued", session.id)
        resp = _signed_in_response(session)
        resp.headers.add("Set-Cookie", self._cookie_header(cookie))
        return resp

    def _refuse_cross_origin(self, request: web.Request) -> None:
        origin = request.headers.get("Origin")
        if origin is not None and not _same_origin(origin, self.origins.scheme, request.host):
            raise Forbidden("Cross-origin sign-in refused", code="cross_origin")
        if request.headers.get("Sec-Fetch-Site", "same-origin") != "same-origin":
            raise Forbidden("Cross-origin sign-in refused", code="cross_origin")

    def _cookie_header(self, value: str) -> str:
        parts = [f"{self.cookie_name}={value}", "Path=/", "HttpOnly"]
        parts.append(f"SameSite={self._apps.cookie_samesite}")
        if self.origins.secure:
            parts.append("Secure")
        return "; ".join(parts)

    def _cookie_values(self, request: web.Request) -> list[str]:
        """Every value of the broker cookie the request carries (an app on a
        sibling origin could add one more of the same name: all are tried)."""
        values = []
        for header in request.headers.getall("Cookie", []):
            for pair in header.split(";"):
                name, _, value = pair.strip().partition("=")
                if name == self.cookie_name and value:
                    values.append(value)
        return values

    async def _signed_in(self, request: web.Request, session_id: str) -> Session:
        return await self._broker.credentials.app_session(session_id, self._cookie_values(request))

    # -- proxying ------------------------------------------------------------------

    def _upstream_url(self, session: Session, request: web.Request) -> URL:
        base = URL.build(scheme="http", host=session.ip_address, port=session.port)
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
            drop_cookies=self._reserved_cookies,
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
            value, self._cookie_values(request)
        )

    async def _proxy_http(self, request: web.Request, session: Session) -> web.StreamResponse:
        limit = self._apps.max_request_bytes
        if request.content_length is not None and request.content_length > limit:
            return self._error(request, 413, "Request body too large", "request_too_large")
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
                        reserved_cookies=self._reserved_cookies,
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

        with self.streams.track(session.id) as ending:
            try:
                return await ending.run(forward())
            except StreamEnded:
                if not started:
                    raise _ended_error(ending.why) from None
                return _cut_off(request, started[0])
            except HttpUpstreamError as exc:
                if upload is not None and upload.too_large:
                    return self._error(request, 413, "Request body too large", "request_too_large")
                if not started:
                    raise
                log.warning("session %s: %s", session.id, exc.message)
                return _cut_off(request, started[0])

    async def _proxy_websocket(self, request: web.Request, session: Session) -> web.StreamResponse:
        if not web.WebSocketResponse().can_prepare(request).ok:
            raise BadRequest("Not a valid WebSocket handshake")
        # A sibling app's origin (same site: the cookie would ride along) was
        # refused already by broker.guard, which checks every WebSocket Origin.
        url = self._upstream_url(session, request)
        headers = await self._headers_for_app(request, websocket=True)
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        protocols = tuple(p.strip() for p in offered.split(",") if p.strip())
        with self.streams.track(session.id) as ending:
            try:
                app_ws = await ending.run(self._upstream.websocket(url, headers, protocols))
            except StreamEnded:
                raise _ended_error(ending.why) from None
            browser = web.WebSocketResponse(
                protocols=(app_ws.protocol,) if app_ws.protocol else (),
                max_msg_size=self._apps.ws_max_message_bytes,
            )
            try:
                await browser.prepare(request)
                try:
                    await ending.run(relay(browser, app_ws))
                except StreamEnded:
                    why = ending.why
                    await asyncio.gather(
                        close_quietly(app_ws, 1001, why.reason),
                        close_quietly(browser, why.code, why.reason),
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


async def _token_from_body(request: web.Request) -> str:
    raw = b""
    async for chunk in request.content.iter_any():
        raw += chunk
        if len(raw) > MAX_EXCHANGE_BODY:
            raise BadRequest("Request body too large")
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Request body is not valid JSON") from None
    token = body.get("token", "") if isinstance(body, dict) else None
    if not isinstance(token, str):
        raise BadRequest("'token' must be a string")
    return token


def _require_open_path(session: Session) -> None:
    """Refuse before connecting when the tunnel grant is not recorded yet (the
    address is still the placeholder) or is gone."""
    not_granted = (
        session.ip_address == UNKNOWN_IP
        and session.grant_id is None
        and session.tunnel_status == TunnelStatus.PENDING
    )
    if not_granted or session.tunnel_status in (TunnelStatus.REVOKED, TunnelStatus.FAILED):
        raise Unavailable(
            "The network path to this workspace is not open; try again in a moment",
            code="tunnel_not_ready",
        )


def _signed_in_response(session: Session) -> web.Response:
    body = json.dumps({"session_id": session.id, "location": "/"})
    return web.Response(text=body, content_type="application/json")


def _ended_error(why: StreamEnd) -> BrokerError:
    if why is SHUTTING_DOWN:
        return Unavailable("The broker is shutting down; try again in a moment")
    return Unauthorized("This workspace session has ended", code="session_ended")


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
    """App origins are answered here; every other host goes on to the broker."""
    proxy = request.app.get(WEBPROXY)
    session_id = proxy.origins.session_of(request.host) if proxy is not None else None
    if proxy is None or session_id is None:
        return await handler(request)
    return await proxy.handle(request, session_id)


def install(app: web.Application) -> None:
    """Serve HTML5 workspaces from the broker ``app``. Call once in
    ``create_app`` after the broker's own cleanup context (this one needs
    `BROKER`); the middleware goes first, ahead of the broker's own."""
    app.middlewares.insert(0, app_origin_middleware)
    app.cleanup_ctx.append(_lifetime)
    app.on_shutdown.append(_on_shutdown)


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    broker = app[BROKER]
    proxy = WebProxy(broker)
    unsubscribe = broker.events.subscribe(proxy.on_session_ended)
    sweep = Periodic("webproxy-sweep", broker.settings.apps.sweep_seconds, proxy.sweep)
    sweep.start()
    broker.app_url = proxy.entry_url
    app[WEBPROXY] = proxy
    try:
        yield
    finally:
        unsubscribe()
        await sweep.aclose()
        proxy.streams.end_all(SHUTTING_DOWN)
        await proxy.aclose()


async def _on_shutdown(app: web.Application) -> None:
    proxy = app.get(WEBPROXY)
    if proxy is not None:
        proxy.streams.end_all(SHUTTING_DOWN)


ENTRY_PAGE = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="referrer" content="no-referrer">
<title>Opening workspace</title>
<script src="/__broker/enter.js" defer></script>
</head>
<body>
<p id="status">Opening the workspace…</p>
<noscript>JavaScript is needed to open this workspace.</noscript>
</body>
</html>
"""

ENTRY_SCRIPT = """\
"use strict";
(function () {
  var status = document.getElementById("status");
  var token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
  // The token must not stay in the address bar, the history or a bookmark.
  history.replaceState(null, "", location.pathname);
  fetch("/__broker/session", {
    method: "POST",
    credentials: "same-origin",
    cache: "no-store",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: token })
  }).then(function (response) {
    if (response.ok) {
      location.replace("/");
      return;
    }
    return response.json().then(function (body) {
      status.textContent = body.detail || "Could not open the workspace.";
    });
  }).catch(function () {
    status.textContent = "Could not reach the broker. Check the connection and reload.";
  });
})();
"""
