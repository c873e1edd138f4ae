"""Origin policy: which browser origins may open a WebSocket to the broker,
and the origin each HTML5 session's app is served from.

**WebSocket origins.**
Browsers send ``Origin`` with every WebSocket handshake and let any page open
a WebSocket to any host, so the server has to check it. The rule:

- No ``Origin`` header: not a browser (a script, the tests, a monitoring
  probe), which can send whatever it likes anyway: allowed; the credential
  decides, as for every other client.
- On the broker's own host: the origin the request was addressed to (the
  ``Host`` header with the request's scheme, or ``X-Forwarded-Proto`` when
  the peer is a trusted proxy), the origin of ``server.public_url``, and each
  of ``server.cors_origins``. The viewer page is served by the broker itself,
  so its tunnel is always same-origin.
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


def addressed_origin(schemes: Iterable[str], host: str) -> set[Origin]:
    """The origins a request for ``host`` (a ``Host`` header) over ``schemes`` was addressed to."""
    found = set()
    for scheme in schemes:
        parsed = parse_origin(f"{scheme}://{host}")
        if parsed is not None:
            found.add(parsed)
    return found


class OriginPolicy:
    """The configured origins: ``public_url``'s and ``cors_origins``."""

    def __init__(self, public_url: str, cors_origins: Iterable[str]) -> None:
        configured = [public_url] if public_url else []
        configured += list(cors_origins)
        self._configured = {o for o in map(parse_origin, configured) if o is not None}

    def allows(self, origin: str | None, *, addressed: set[Origin], app_host: bool) -> bool:
        """Whether a WebSocket handshake carrying ``origin`` may proceed;
        ``addressed`` is what `addressed_origin` gave for the request and
        ``app_host`` whether the request is for an HTML5 app's origin."""
        if origin is None:
            return True
        parsed = parse_origin(origin)
        if parsed is None:
            return False
        if parsed in addressed:
            return True
        return not app_host and parsed in self._configured


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
