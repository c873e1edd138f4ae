"""Which browser origins may open a WebSocket to the broker.

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
"""

from __future__ import annotations

from collections.abc import Iterable

from yarl import URL

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
