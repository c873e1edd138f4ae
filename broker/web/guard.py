"""The edge guard: the first middleware every request meets, on the broker's
own origin and on the HTML5 apps' origins alike (it routes nothing itself).

Before the request goes on:

0. A request target that is not a path (``OPTIONS *``, absolute-form
   ``GET http://host/``, authority-form ``CONNECT host:port``) gets a JSON
   400: the broker is no proxy, and nothing after this expects anything but
   a path. Request headers larger than `max_header_bytes` all together get a
   JSON 431. (aiohttp's HTTP parser refuses a single line over its limits, more
   than 128 headers or a malformed request itself, with a plain-text 400,
   before any of the broker's code runs.)
1. A request whose ``Host`` is not the broker's (`OriginPolicy.allows_host`:
   ``server.public_url``'s, the address the connection arrived on, an HTML5
   app's host, or in development a loopback name) gets a JSON 421
   Misdirected Request: a DNS-rebinding page cannot talk to the broker under
   its own name. A browser WebSocket handshake from an origin that is not
   allowed (`broker.web.origins` has the rule) is refused with 403, so no
   guacd or web-app connection is ever made for it.
2. An address with too many failed sign-ins (``[ratelimit] ip_auth_failure_*``)
   gets 429 for every request that presents a credential (an
   ``Authorization`` header, a ``token`` query parameter, the HTML5 sign-in
   POST), without the credential being looked at, until its budget refills.
3. A launch over the address's or the user's launch budget gets 429. The
   user is the token's ``sub``; the user's budget only refuses a token that
   verifies, so nobody can spend someone else's launches: a forged token
   naming another user goes on to its 401.

After it:

4. A presented credential that was refused (a 401 from the broker, or a
   viewer tunnel closed with CLIENT_UNAUTHORIZED, see `note_refusal`) counts
   against the address and the user the token names. Once that user's
   budget is spent, such a 401 is answered 429 instead; a valid token of the
   user still works (failures are what is limited, not the user).
5. A launch that passed authentication counts against both launch budgets.

A 429 carries ``Retry-After`` (whole seconds) and JSON ``{"detail", "code"}``.
A guacamole-common-js tunnel (it offers the ``guacamole`` subprotocol) gets
its handshake and then a close with CLIENT_TOO_MANY (797, WebSocket code
1008), which the viewer can show.

On an app origin only the sign-in POST counts (``/__broker/session``): the
app's own answers, 401s included, are the app's business.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from broker.config import IPNetwork, Settings
from broker.core.runtime import Broker
from broker.web.apps import WEBPROXY
from broker.web.http import BROKER, Handler, client_ip, error_response, in_networks, metrics_of
from broker.web.origins import OriginPolicy, parse_origin, socket_origins
from broker.web.ratelimit import RateLimits, address_key, retry_after
from broker.web.relay import close_websocket
from broker.web.signin import EXCHANGE_PATH
from protocols.status import Ending, GuacamoleStatus

LAUNCH_ROUTE = "/api/workspaces/{workspace_id}/launch"

RATE_LIMITS: web.AppKey[RateLimits] = web.AppKey("rate_limits", RateLimits)
ORIGINS: web.AppKey[OriginPolicy] = web.AppKey("origins", OriginPolicy)
AUTH_FAILED: web.RequestKey[bool] = web.RequestKey("auth_failed", bool)


def note_refusal(request: web.Request, ending: Ending | None) -> None:
    """For handlers that refuse a credential in-band (the viewer tunnel's
    close with CLIENT_UNAUTHORIZED): count it as a failed sign-in."""
    if ending is not None and ending.status == GuacamoleStatus.CLIENT_UNAUTHORIZED:
        request[AUTH_FAILED] = True


class _Request:
    """What the guard needs to know about one request."""

    def __init__(self, request: web.Request, broker: Broker) -> None:
        settings = broker.settings
        proxy = request.app.get(WEBPROXY)
        self.app_host = proxy is not None and proxy.origins.session_of(request.host) is not None
        # The key of the address's budgets: an IPv6 client's /64.
        self.ip = address_key(client_ip(request, settings.server.trusted_proxies) or "unknown")
        post = request.method == "POST"
        if self.app_host:
            # Only the sign-in POST is the broker's; the rest belongs to the app.
            self.credential = None
            self.presented = post and request.path == EXCHANGE_PATH
        else:
            self.credential = _credential(request)
            self.presented = self.credential is not None
        self.subject = broker.credentials.claimed_subject(self.credential or "")
        route = request.match_info.route.resource
        canonical = route.canonical if route is not None else ""
        self.launch = not self.app_host and post and canonical == LAUNCH_ROUTE


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The first middleware of ``create_app``'s list; needs `RATE_LIMITS` and
    `ORIGINS` set on the app."""
    broker = request.app[BROKER]
    if not request.raw_path.startswith("/"):
        metrics_of(request).edge_refusals.labels(reason="request_target").inc()
        return error_response(
            400, "The request target must be a path, e.g. /api/workspaces", "bad_request_target"
        )
    if _header_bytes(request) > max_header_bytes(broker.settings):
        metrics_of(request).edge_refusals.labels(reason="headers_too_large").inc()
        return error_response(431, "Request headers too large", "headers_too_large")
    seen = _Request(request, broker)
    local = _local_address(request)
    if not seen.app_host and not request.app[ORIGINS].allows_host(
        request.headers.get("Host"), local
    ):
        metrics_of(request).edge_refusals.labels(reason="misdirected").inc()
        return error_response(
            421, "This broker does not serve that host name", "misdirected_request"
        )
    if not _origin_allowed(request, broker, seen, local):
        metrics_of(request).edge_refusals.labels(reason="websocket_origin").inc()
        return error_response(
            403, "WebSocket connections from this origin are not allowed", "origin_not_allowed"
        )
    limits = request.app[RATE_LIMITS]
    if not limits.enabled:
        return await handler(request)
    refused = await _before(request, broker, limits, seen)
    if refused is not None:
        return refused
    response = await handler(request)
    return await _after(request, limits, seen, response)


def max_header_bytes(settings: Settings) -> int:
    """All request headers together: room for the largest accepted token twice
    over (aiohttp's parser bounds each line and their number, not the sum)."""
    return max(32768, 4 * settings.auth.max_token_bytes)


def _header_bytes(request: web.Request) -> int:
    return sum(len(name) + len(value) + 4 for name, value in request.raw_headers)


def _origin_allowed(
    request: web.Request, broker: Broker, seen: _Request, local: tuple[str, int] | None
) -> bool:
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return True
    proxy = request.app.get(WEBPROXY)
    schemes = {request.scheme}
    if seen.app_host and proxy is not None:
        # Only the app's own origin, made from the configured template.
        session_id = proxy.origins.session_of(request.host) or ""
        own = proxy.origins.origin(session_id, request.host) if session_id else ""
        return request.app[ORIGINS].allows(
            request.headers.get("Origin"),
            local=set(),
            app_origin=parse_origin(own) if own else None,
            app_host=True,
        )
    if _peer_is_trusted(request, broker.settings.server.trusted_proxies):
        # A trusted proxy says which scheme the browser used.
        forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
        if forwarded:
            schemes = {forwarded.lower()}
    return request.app[ORIGINS].allows(
        request.headers.get("Origin"), local=socket_origins(schemes, local)
    )


def _local_address(request: web.Request) -> tuple[str, int] | None:
    """The IP address and port the connection arrived on (from the socket)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        return str(sockname[0]), int(sockname[1])
    return None


async def _before(
    request: web.Request, broker: Broker, limits: RateLimits, seen: _Request
) -> web.StreamResponse | None:
    if seen.presented and (wait := await limits.ip_failures.peek(seen.ip)):
        detail = "Too many failed sign-ins from your address; try again later"
        return await _too_many(request, wait, detail, "ip_auth_failures")
    if not seen.launch:
        return None
    if wait := await limits.ip_launches.peek(seen.ip):
        detail = "Too many launches from your address; try again later"
        return await _too_many(request, wait, detail, "ip_launches")
    if seen.subject is not None and (wait := await limits.user_launches.peek(seen.subject)):
        if await broker.credentials.verifies(seen.credential or ""):
            detail = "Too many launches; try again later"
            return await _too_many(request, wait, detail, "user_launches")
    return None


async def _after(
    request: web.Request,
    limits: RateLimits,
    seen: _Request,
    response: web.StreamResponse,
) -> web.StreamResponse:
    failed = request.get(AUTH_FAILED, False) or (response.status == 401 and seen.presented)
    if failed:
        await limits.ip_failures.take(seen.ip)
        if seen.subject is not None and (wait := await limits.user_failures.take(seen.subject)):
            if response.status == 401 and not response.prepared:
                metrics_of(request).edge_refusals.labels(reason="user_auth_failures").inc()
                detail = "Too many failed sign-ins for this user; try again later"
                return error_response(
                    429, detail, "too_many_requests", {"Retry-After": str(retry_after(wait))}
                )
    elif seen.launch and response.status not in (401, 429):
        await limits.ip_launches.take(seen.ip)
        if seen.subject is not None:
            await limits.user_launches.take(seen.subject)
    return response


async def _too_many(
    request: web.Request, wait: float, detail: str, rule: str
) -> web.StreamResponse:
    metrics_of(request).edge_refusals.labels(reason=rule).inc()
    seconds = retry_after(wait)
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    if "guacamole" in (p.strip() for p in offered.split(",")):
        ws = web.WebSocketResponse(protocols=("guacamole",))
        if ws.can_prepare(request).ok:
            await ws.prepare(request)
            message = f"Too many attempts; try again in {seconds} s"
            await close_websocket(ws, Ending(GuacamoleStatus.CLIENT_TOO_MANY, message))
            return ws
    return error_response(429, detail, "too_many_requests", {"Retry-After": str(seconds)})


def _peer_is_trusted(request: web.Request, trusted: Sequence[IPNetwork]) -> bool:
    return request.remote is not None and in_networks(request.remote, trusted)


def _credential(request: web.Request) -> str | None:
    """The credential the request presents, if any (not checked here)."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else header
    token = request.query.get("token")
    return token
