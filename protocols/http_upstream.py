"""The HTTP upstream of an HTML5 workspace: header rules, a streaming client, and a
WebSocket relay. The broker's proxy (`broker.web.apps`) is the only caller;
nothing here knows about sessions or cookies' meaning, only their names.

Header rules (RFC 9110 section 7.6.1 and the usual reverse-proxy practice):

- Hop-by-hop headers never cross the proxy, either way: ``Connection``,
  ``Keep-Alive``, ``Proxy-Authenticate``, ``Proxy-Authorization``,
  ``Proxy-Connection``, ``TE``, ``Trailer``, ``Transfer-Encoding``,
  ``Upgrade``, and any header the ``Connection`` header names.
- Towards the app: the caller's cookies named in ``drop_cookies`` are cut out
  of ``Cookie`` (other cookies pass), ``Authorization`` goes when the caller
  says it carries a broker credential, whatever the client sent as
  ``Forwarded``/``X-Forwarded-*``/``X-Real-IP`` is replaced by
  `Forwarding`, and ``Host`` is the public host (so the app's own
  same-origin checks, absolute URLs and WebSocket ``Origin`` checks see the
  origin the browser uses).
- Towards the browser: ``Set-Cookie`` for a reserved name is dropped, the
  others lose any ``Domain`` attribute (host-only on the app origin), and a
  ``Location`` pointing at the app's own address is rewritten to the public
  origin. Everything else (``Content-Length``, ``Content-Encoding``, the
  app's own security headers) passes unchanged: bodies are relayed byte for
  byte, never decompressed or buffered whole.

Errors join the package's tree (`protocols.errors`); ``err.status.http_status``
is what the proxy answers::

    GuacamoleError
    └── HttpUpstreamError           515 UPSTREAM_ERROR    → 502  broken response or refused upgrade
        ├── HttpUpstreamUnreachable 519 UPSTREAM_NOT_FOUND → 502  the connect failed
        └── HttpUpstreamTimeout     514 UPSTREAM_TIMEOUT   → 504  connect or read timed out
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterable, AsyncIterator, Collection, Iterable
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from aiohttp import WSMsgType
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from protocols.errors import GuacamoleError
from protocols.status import GuacamoleStatus

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
FORWARDING = frozenset(
    {"forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip"}
)
# aiohttp makes its own handshake headers for the upstream leg.
WEBSOCKET_HANDSHAKE = frozenset(
    {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions"}
    | {"sec-websocket-protocol", "sec-websocket-accept"}
)
# Close codes that may not be sent in a close frame (RFC 6455 section 7.4.1).
_UNSENDABLE = {1005: 1000, 1006: 1011, 1015: 1011}
Headers = CIMultiDict[str] | CIMultiDictProxy[str]
_ABSOLUTE = re.compile(r"^(https?)://([^/?#]*)(.*)$", re.IGNORECASE | re.DOTALL)


class HttpUpstreamError(GuacamoleError):
    """The web app answered something unusable, or broke off."""

    status = GuacamoleStatus.UPSTREAM_ERROR


class HttpUpstreamUnreachable(HttpUpstreamError):
    status = GuacamoleStatus.UPSTREAM_NOT_FOUND


class HttpUpstreamTimeout(HttpUpstreamError):
    status = GuacamoleStatus.UPSTREAM_TIMEOUT


@dataclass(frozen=True, slots=True)
class Forwarding:
    """What the app is told about the original request (``X-Forwarded-*``)."""

    client_ip: str | None
    proto: str
    host: str


@dataclass(frozen=True, slots=True)
class UpstreamTimeouts:
    """``connect``: to open the TCP connection; ``read``: the longest silence
    while waiting for response headers or the next body chunk."""

    connect: float = 10.0
    read: float = 300.0


# -- header rules --------------------------------------------------------------


def connection_listed(headers: Headers) -> set[str]:
    """Header names the ``Connection`` header marks as hop-by-hop."""
    values = headers.getall("Connection", [])
    return {t.strip().lower() for v in values for t in v.split(",") if t.strip()}


def strip_cookies(values: Iterable[str], names: Collection[str]) -> str:
    """The ``Cookie`` header without the cookies called any of ``names``."""
    kept = []
    for value in values:
        for pair in value.split(";"):
            pair = pair.strip()
            if pair and pair.partition("=")[0].strip() not in names:
                kept.append(pair)
    return "; ".join(kept)


def request_headers(
    incoming: Headers,
    *,
    host: str,
    forwarding: Forwarding,
    drop_cookies: Collection[str] = (),
    drop_authorization: bool = False,
    websocket: bool = False,
) -> CIMultiDict[str]:
    """The headers to send the app for a request that arrived with ``incoming``."""
    dropped = HOP_BY_HOP | FORWARDING | connection_listed(incoming) | {"host", "cookie"}
    if websocket:
        dropped |= WEBSOCKET_HANDSHAKE
    if drop_authorization:
        dropped |= {"authorization"}
    out = CIMultiDict((k, v) for k, v in incoming.items() if k.lower() not in dropped)
    cookie = strip_cookies(incoming.getall("Cookie", []), drop_cookies)
    if cookie:
        out["Cookie"] = cookie
    out["Host"] = host
    if forwarding.client_ip:
        out["X-Forwarded-For"] = forwarding.client_ip
    out["X-Forwarded-Proto"] = forwarding.proto
    out["X-Forwarded-Host"] = forwarding.host
    return out


def response_headers(
    incoming: Headers,
    *,
    upstream: URL,
    public_origin: str,
    reserved_cookies: Collection[str] = (),
) -> CIMultiDict[str]:
    """The app's response headers as the browser may see them."""
    dropped = HOP_BY_HOP | connection_listed(incoming)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        key = name.lower()
        if key in dropped:
            continue
        if key == "set-cookie":
            if value.partition("=")[0].strip() in reserved_cookies:
                continue
            value = host_only_cookie(value)
        if key == "location":
            value = rewrite_location(value, upstream, public_origin)
        out.add(name, value)
    return out


def host_only_cookie(set_cookie: str) -> str:
    """``set_cookie`` without its ``Domain`` attribute: an app's cookies stay on
    its own origin (a parent domain would reach the other sessions' apps;
    the app's internal host name would make the browser drop the cookie)."""
    parts = set_cookie.split(";")
    kept = [parts[0]] + [p for p in parts[1:] if p.strip().partition("=")[0].lower() != "domain"]
    return ";".join(kept)


def rewrite_location(value: str, upstream: URL, public_origin: str) -> str:
    """``value`` with the app's own origin replaced by ``public_origin``;
    relative and foreign URLs are left alone."""
    match = _ABSOLUTE.match(value.strip())
    if match is None:
        return value
    scheme, authority, rest = match.group(1).lower(), match.group(2).lower(), match.group(3)
    default = {"http": 80, "https": 443}[scheme]
    own = {f"{upstream.raw_host}:{upstream.port}".lower()}
    if upstream.port == default:
        own.add((upstream.raw_host or "").lower())
    if scheme != upstream.scheme or authority not in own:
        return value
    return public_origin + (rest if rest.startswith("/") or not rest else "/" + rest)


# -- the client ----------------------------------------------------------------


class HttpUpstream:
    """One pooled HTTP client for every app (no cookie jar, no redirects
    followed, no decompression, no headers of its own). Call `aclose`."""

    def __init__(self, timeouts: UpstreamTimeouts, *, ws_max_message_bytes: int) -> None:
        self._timeouts = timeouts
        self._ws_max = ws_max_message_bytes
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(
                total=None, connect=timeouts.connect, sock_read=timeouts.read
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._session.close()

    async def open(
        self,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        body: AsyncIterable[bytes] | None,
    ) -> aiohttp.ClientResponse:
        """Send the request (streaming ``body``) and return once the app's
        response headers arrived. The caller must ``release()`` the response."""
        try:
            return await self._session.request(
                method, url, headers=headers, data=body, allow_redirects=False
            )
        except Exception as exc:
            raise _translate(exc, url) from exc

    async def websocket(
        self, url: URL, headers: CIMultiDict[str], protocols: tuple[str, ...]
    ) -> aiohttp.ClientWebSocketResponse:
        """Open the app's WebSocket, offering the browser's subprotocols."""
        try:
            return await self._session.ws_connect(
                url,
                headers=headers,
                protocols=protocols,
                autoping=True,
                max_msg_size=self._ws_max,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise HttpUpstreamError(
                f"the web app refused the WebSocket upgrade (HTTP {exc.status})"
            ) from exc
        except Exception as exc:
            raise _translate(exc, url) from exc


async def body_chunks(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The response body as it arrives; a break-off raises `HttpUpstreamError`."""
    try:
        async for chunk in response.content.iter_any():
            yield chunk
    except Exception as exc:
        raise _translate(exc, response.url) from exc


def _translate(exc: Exception, url: URL) -> Exception:
    where = f"{url.host}:{url.port}"
    if isinstance(exc, HttpUpstreamError):
        return exc
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return HttpUpstreamTimeout(f"the web app at {where} did not answer in time")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return HttpUpstreamUnreachable(f"the web app at {where} cannot be reached")
    if isinstance(exc, aiohttp.ClientError):
        return HttpUpstreamError(f"the web app at {where} broke off the connection")
    return exc


# -- WebSocket relay -------------------------------------------------------------


class WebSocketEnd(Protocol):
    """What the relay needs of either end (aiohttp's server and client sockets)."""

    @property
    def closed(self) -> bool: ...

    @property
    def close_code(self) -> int | None: ...

    async def receive(self) -> aiohttp.WSMessage: ...

    async def send_str(self, data: str, compress: int | None = None) -> None: ...

    async def send_bytes(self, data: bytes, compress: int | None = None) -> None: ...

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool: ...


@dataclass(frozen=True, slots=True)
class Closed:
    """How a relay ended: which side closed first, with what code and reason."""

    by: str
    code: int
    reason: str


async def relay(browser: WebSocketEnd, app: WebSocketEnd) -> Closed:
    """Copy text and binary messages both ways until one side closes, then close
    the other with the same code and reason. Cancel it to stop early (then the
    caller closes both ends)."""
    pumps = {
        asyncio.ensure_future(_pump(browser, app)): "browser",
        asyncio.ensure_future(_pump(app, browser)): "app",
    }
    try:
        done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
    first = next(iter(done))
    code, reason = first.result()
    other = app if pumps[first] == "browser" else browser
    await other.close(code=sendable(code), message=reason.encode()[:123])
    return Closed(pumps[first], code, reason)


async def _pump(src: WebSocketEnd, dst: WebSocketEnd) -> tuple[int, str]:
    while True:
        msg = await src.receive()
        try:
            if msg.type == WSMsgType.TEXT:
                await dst.send_str(msg.data)
                continue
            if msg.type == WSMsgType.BINARY:
                await dst.send_bytes(msg.data)
                continue
        except ConnectionError:
            return dst.close_code or 1006, ""
        if msg.type == WSMsgType.CLOSE:
            return int(msg.data), str(msg.extra or "")
        return src.close_code or 1006, ""


def sendable(code: int) -> int:
    """``code`` if it may be sent in a close frame, else its nearest meaning."""
    if code in _UNSENDABLE:
        return _UNSENDABLE[code]
    return code if 1000 <= code < 5000 else 1011


async def close_quietly(end: WebSocketEnd, code: int, reason: str) -> None:
    """Close ``end`` unless closed; a peer that is already gone is not an error."""
    if not end.closed:
        with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
            await end.close(code=sendable(code), message=reason.encode()[:123])
