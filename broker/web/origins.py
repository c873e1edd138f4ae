"""Origin policy: which browser origins may open a WebSocket to the broker,
and the origin each HTML5 session's app is served from.

**WebSocket origins.**
Browsers send ``Origin`` with every WebSocket handshake and let any page open
a WebSocket to any host, so the server has to check it. The rule:

- No ``Origin`` header: not a browser (a script, the tests, a monitoring
  probe), which can send whatever it likes anyway: allowed; the credential
  decides, as for every other client.
- On the broker's own host: the origin of ``server.public_url``, each of
  ``server.cors_origins``, the IP address and port the connection arrived on
  (with the request's scheme, or ``X-Forwarded-Proto`` when the peer is a
  trusted proxy) and, in demo mode or with ``server.allow_loopback_hosts``,
  ``localhost`` on that port. Never the ``Host`` the request names: a page
  on a name its owner points at the broker (DNS rebinding) would otherwise
  be "same-origin". The viewer page is served from one of these.
- On an HTML5 app's origin (``[apps] origin_template``): that origin only.
  App origins of one user are same-site with each other, so a cookie-bearing
  WebSocket from a sibling app would otherwise ride that user's app cookie.
- Anything else, including ``Origin: null`` (sandboxed frames, files) and
  values that are not an origin: refused.

Origins compare by scheme, host (case-insensitive) and port (default ports
filled in), as browsers do.

**App origins** (`AppOrigins`). ``[apps] origin_template`` turns a session id
into an origin: ``http://{session}.localhost:{port}`` locally (Chromium
resolves ``*.localhost`` to loopback; ``{port}`` is the port the browser
reached the broker on, taken from the request's ``Host``, else
``server.port``), or ``https://{session}.apps.example.com`` in production (a
wildcard DNS name and certificate for the broker). A viewer of an html5
session is sent to `app_entry_url` on that origin.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from yarl import URL

from broker.config import Settings, parse_origin_template
from broker.core.models import looks_like_session_id

ENTRY_PATH = "/__broker/enter"

Origin = tuple[str, str, int]


def parse_origin(value: str) -> Origin | None:
    """``scheme://host[:port]`` → (scheme, host, port); None for anything else
    (``null``, paths, userinfo, other schemes)."""
    try:
        url = URL(value.strip())
    except (ValueError, TypeError):
        return None
    if url.scheme not in ("http", "https") or not url.host:
        return None
    if url.user or url.password or url.path not in ("", "/") or url.query_string or url.fragment:
        return None
    port = url.port
    if port is None:
        return None
    return url.scheme, url.host.lower().rstrip("."), port


def socket_origins(schemes: Iterable[str], address: tuple[str, int] | None) -> set[Origin]:
    """The origins of the socket address a request arrived on (an IP literal
    and port, from the connection, never from the request's headers)."""
    if address is None:
        return set()
    ip, port = address
    return {(scheme, ip.lower(), port) for scheme in schemes}


def split_host(host: str) -> tuple[str, int | None] | None:
    """A ``Host`` header → (name, port or None); None when it is malformed."""
    name, port = _split_host(host)
    rest = host[len(name) :]
    if rest and rest != f":{port}":
        return None  # a port that is not digits, or anything else after the name
    name = name.strip("[]").lower().rstrip(".")
    if not name or not all(c.isalnum() or c in ".-_:" for c in name):
        return None
    return name, int(port) if port else None


def is_loopback_name(name: str, *, subdomains: bool = True) -> bool:
    """``localhost`` (and ``*.localhost`` with ``subdomains``), 127.0.0.0/8 or ``::1``."""
    if name == "localhost" or (subdomains and name.endswith(".localhost")):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class OriginPolicy:
    """Which ``Host`` a request may name and which ``Origin`` a WebSocket
    handshake may carry; both from the configuration and the connection, never
    from what the request claims (a DNS-rebinding page sends its own name as
    ``Host``; an ``Origin`` equal to that ``Host`` proves nothing).

    Hosts: ``server.public_url``'s (else ``server.host:server.port``), the
    IP address and port the connection arrived on, the HTML5 apps' hosts
    (``[apps] origin_template``, decided by the caller) and, with ``loopback``
    (demo mode, ``server.allow_loopback_hosts``, ``--insecure-dev``),
    ``localhost``, ``*.localhost``, 127.0.0.0/8 and ``::1``.

    WebSocket origins on the broker's own host: ``public_url``'s, each of
    ``cors_origins``, the connection's own address (the scheme the request
    came over) and, with ``loopback``, ``localhost`` or a loopback IP with that
    scheme and the port the connection arrived on. On an app's host: that app's origin only."""

    def __init__(
        self,
        public_url: str,
        cors_origins: Iterable[str],
        *,
        listen: tuple[str, int] | None = None,
        loopback: bool = False,
    ) -> None:
        configured = [public_url] if public_url else []
        configured += list(cors_origins)
        self._configured = {o for o in map(parse_origin, configured) if o is not None}
        public = parse_origin(public_url) if public_url else None
        self._public = (public[1], public[2]) if public else None
        listen_host = listen[0].lower() if listen else ""
        unspecified = listen_host in ("", "0.0.0.0", "::")
        self._listen = None if unspecified or listen is None else (listen_host, listen[1])
        self.loopback = loopback

    @classmethod
    def from_settings(cls, settings: Settings) -> OriginPolicy:
        server = settings.server
        return cls(
            server.public_url,
            server.cors_origins,
            listen=(server.host, server.port),
            loopback=settings.demo.enabled or server.allow_loopback_hosts,
        )

    def allows_host(self, host: str | None, local: tuple[str, int] | None) -> bool:
        """Whether a request naming ``host`` (its ``Host`` header; None when
        it sent none) is for this broker; ``local`` is the (IP, port) the
        connection arrived on. App hosts are the caller's to accept."""
        if host is None:
            return True
        parts = split_host(host)
        if parts is None:
            return False
        name, port = parts
        own = self._public or self._listen
        if own is not None and name == own[0] and port in (None, own[1]):
            return True
        if local is not None and name == local[0].lower() and port in (None, local[1]):
            return True
        return self.loopback and is_loopback_name(name)

    def allows(
        self,
        origin: str | None,
        *,
        local: set[Origin],
        app_origin: Origin | None = None,
        app_host: bool = False,
    ) -> bool:
        """Whether a WebSocket handshake carrying ``origin`` may proceed.
        ``local`` is what `socket_origins` gave for the request; on an app's
        host (``app_host``) only ``app_origin``, that app's own, is allowed."""
        if origin is None:
            return True
        parsed = parse_origin(origin)
        if parsed is None:
            return False
        if app_host:
            return parsed == app_origin
        if parsed in self._configured or parsed in local:
            return True
        served = {(scheme, port) for scheme, _, port in local}
        return (
            self.loopback
            and is_loopback_name(parsed[1], subdomains=False)
            and (parsed[0], parsed[2]) in served
        )


# -- app origins -------------------------------------------------------------------


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


def same_origin(origin: str, scheme: str, host: str) -> bool:
    """Whether ``origin`` (an ``Origin`` header) is ``scheme://host``."""
    try:
        given, expected = URL(origin), URL(f"{scheme}://{host}")
    except ValueError:
        return False
    return given.is_absolute() and (given.scheme, given.host, given.port) == (
        expected.scheme,
        expected.host,
        expected.port,
    )


def _split_host(host: str) -> tuple[str, str]:
    """``Host`` header → (name, port or "")."""
    if host.startswith("["):
        end = host.find("]")
        name, rest = host[: end + 1], host[end + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = host.partition(":")
    return name, port if port.isdigit() else ""
