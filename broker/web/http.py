"""The HTTP edge shared by every handler: typed app state, credentials, client
addresses, and the middlewares (JSON errors, metrics, CORS, security headers)."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from broker.config import IPNetwork
from broker.core.auth import Principal
from broker.core.errors import BadRequest, BrokerError, TooManyRequests, Unauthorized
from broker.core.runtime import Broker
from broker.web.metrics import Metrics

log = logging.getLogger(__name__)

# Set by the broker's cleanup context: there only while the app runs.
BROKER: web.AppKey[Broker] = web.AppKey("broker", Broker)
# Set by ``create_app``: there from the start, so every middleware may count.
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HTML_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def broker_of(request: web.Request) -> Broker:
    return request.app[BROKER]


def metrics_of(request: web.Request) -> Metrics:
    return request.app[METRICS]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, separators=(",", ":")),
        status=status,
        content_type="application/json",
    )


def error_response(
    status: int, detail: str, code: str, headers: dict[str, str] | None = None
) -> web.Response:
    resp = json_response({"detail": detail, "code": code}, status)
    if headers:
        resp.headers.update(headers)
    return resp


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "Missing bearer token" if not header else "Malformed Authorization header"
        )
    return token.strip()


async def principal(request: web.Request) -> Principal:
    """The caller's identity from a bearer JWT (viewer tokens are not accepted here)."""
    return await broker_of(request).credentials.principal(bearer_token(request))


def client_ip(request: web.Request, trusted: Sequence[IPNetwork]) -> str | None:
    """The caller's address; ``X-Forwarded-For`` is honoured only hop by hop
    through the configured trusted proxies (``server.trusted_proxies``)."""
    peer = request.remote
    if not trusted or peer is None:
        return peer
    chain = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    address = peer
    while in_networks(address, trusted) and chain:
        address = chain.pop()
    return address


def in_networks(address: str, networks: Sequence[IPNetwork]) -> bool:
    """Whether ``address`` (an IP, else False) lies in one of ``networks``."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in n for n in networks)


MAX_JSON_DEPTH = 32
_JSON_SPECIAL = re.compile(rb'[\[\]{}"\\]')


def parse_json(raw: bytes) -> Any:
    """A request body's JSON; `BadRequest` (400) when it is not JSON or nests
    deeper than `MAX_JSON_DEPTH` (``json.loads`` recurses once per level: 30,000
    ``[`` would raise RecursionError)."""
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _depth(raw) > MAX_JSON_DEPTH:
        raise BadRequest(f"Request body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("Request body is not valid JSON") from None


def _depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in ``raw``, strings skipped
    (one pass, linear in the body's size)."""
    depth = deepest = 0
    in_string, escaped = False, -1
    for match in _JSON_SPECIAL.finditer(raw):
        at = match.start()
        char = raw[at]
        if at == escaped:
            continue
        if in_string:
            if char == 0x5C:  # backslash: the next character is escaped
                escaped = at + 1
            elif char == 0x22:
                in_string = False
        elif char == 0x22:
            in_string = True
        elif char in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif char in (0x5D, 0x7D):
            depth -= 1
    return deepest


async def optional_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, ``{}`` when empty; 400 otherwise."""
    raw = await request.read()
    if not raw.strip():
        return {}
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object")
    return body


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes JSON ``{"detail", "code"}``: no HTML error pages, no
    stack traces, no secrets."""
    try:
        return await handler(request)
    except BrokerError as exc:
        return _broker_error(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        detail = {404: "Not found", 405: "Method not allowed", 413: "Request body too large"}
        return error_response(
            exc.status, detail.get(exc.status, exc.reason), exc.reason.lower().replace(" ", "_")
        )
    except (OperationalError, PoolTimeout, DBAPIError, ConnectionError) as exc:
        if _refused_value(exc):
            return error_response(422, "A value sent is not allowed here", "unprocessable")
        # Not a bug: the database is down, locked or unreachable. The request
        # changed nothing (its transaction did not commit); the caller may retry.
        cause = getattr(exc, "orig", None) or exc
        log.warning("database unavailable: %s: %s", type(cause).__name__, cause)
        return error_response(
            503,
            "Database unavailable, try again shortly",
            "database_unavailable",
            {"Retry-After": "2"},
        )


def _refused_value(exc: Exception) -> bool:
    """The database refused a value the caller sent, which is bad input and not
    an outage: a DataError, or SQLSTATE class 22 "data exception" (asyncpg's
    errors reach SQLAlchemy as plain DBAPIErrors), e.g. a NUL in a filter."""
    sqlstate = str(getattr(getattr(exc, "orig", None), "sqlstate", None) or "")
    return isinstance(exc, DataError) or sqlstate.startswith("22")


def _broker_error(request: web.Request, exc: BrokerError) -> web.Response:
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthorized):
        given = bool(request.headers.get("Authorization"))
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"' if given else "Bearer"
    if isinstance(exc, TooManyRequests) and exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    if exc.status >= 500 and type(exc) is BrokerError:
        log.error("internal error: %s", exc.detail)
        return error_response(500, "Internal server error", "internal_error")
    return error_response(exc.status, exc.detail, exc.code, headers)


@web.middleware
async def unexpected_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The last line: an unexpected exception is logged and answered with a bare 500."""
    try:
        return await handler(request)
    except (web.HTTPException, BrokerError, DBAPIError, PoolTimeout, ConnectionError):
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "Internal server error", "internal_error")


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        metrics_of(request).requests.labels(
            method=request.method, route=route, status=f"{status // 100}xx"
        ).observe(time.perf_counter() - started)


def cors_middleware(origins: Sequence[str]) -> Middleware:
    allowed = frozenset(origins)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        ok = origin is not None and origin in allowed and request.path.startswith("/api/")
        if (
            ok
            and request.method == "OPTIONS"
            and "Access-Control-Request-Method" in request.headers
        ):
            resp: web.StreamResponse = web.Response(status=204)
            resp.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            resp.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            resp.headers["Access-Control-Max-Age"] = "600"
        else:
            resp = await handler(request)
        if ok:
            assert origin is not None
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Vary"] = "Origin"
        return resp

    return cors


async def security_headers(request: web.Request, resp: web.StreamResponse) -> None:
    """``on_response_prepare``: runs for every response, file responses included,
    once their content type is known. HTML pages get the strict set."""
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    if resp.content_type == "text/html":
        for name, value in HTML_SECURITY_HEADERS.items():
            resp.headers.setdefault(name, value)
    if request.path.startswith("/api/"):
        resp.headers.setdefault("Cache-Control", "no-store")
