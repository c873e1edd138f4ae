"""Signing in to an HTML5 workspace's origin: the ``/__broker/`` endpoints and
the app cookie (DESIGN.md section 8). The viewer token only ever travels in
URL fragments, which browsers never send, and in one POST body:

1. The viewer page ``/viewer/<id>#token=<viewer token>`` learns ``app_url``
   from ``GET /viewer/<id>/info`` (`broker.web.origins.app_entry_url`, e.g.
   ``http://<id>.localhost:8080/__broker/enter``) and goes to
   ``<app_url>#token=<viewer token>``.
2. ``GET /__broker/enter`` is a small page (``static/enter.html``) whose
   script (``/__broker/enter.js``, ``static/enter.js``; CSP ``script-src
   'self'``, no inline script) takes the token out of the address bar and
   history, POSTs ``{"token": "..."}`` (``Content-Type: application/json``)
   to ``/__broker/session`` and, on success, replaces itself with ``/``.
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
   database each time (`AppSignIn.signed_in`; its session must still be
   active). ``/__broker/`` is reserved: nothing under it is proxied.

Errors are raised as `BrokerError`; the caller (`broker.web.apps.WebProxy`)
turns them into `error_page` answers.
"""

from __future__ import annotations

import html
import json
import logging
import secrets
from http import HTTPStatus
from pathlib import Path

from aiohttp import web

from broker.core.errors import BadRequest, Forbidden, NotFound, Unauthorized
from broker.core.models import Session
from broker.core.runtime import Broker
from broker.web.http import client_ip, parse_json
from broker.web.origins import ENTRY_PATH, AppOrigins, same_origin

log = logging.getLogger(__name__)

RESERVED_PREFIX = "/__broker/"
ENTRY_SCRIPT_PATH = "/__broker/enter.js"
EXCHANGE_PATH = "/__broker/session"
MAX_EXCHANGE_BODY = 4096

_STATIC = Path(__file__).parent / "static"
ENTRY_PAGE = (_STATIC / "enter.html").read_text(encoding="utf-8")
ENTRY_SCRIPT = (_STATIC / "enter.js").read_text(encoding="utf-8")

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


def error_page(request: web.Request, status: int, detail: str, code: str) -> web.Response:
    """An answer of the broker's own on an app origin: an HTML page for
    browsers, JSON ``{"detail", "code"}`` otherwise, with `OWN_HEADERS`."""
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


class AppSignIn:
    """The ``/__broker/`` endpoints and the app cookie of every app origin."""

    def __init__(self, broker: Broker, origins: AppOrigins) -> None:
        apps = broker.settings.apps
        self._broker = broker
        self._origins = origins
        self._samesite = apps.cookie_samesite
        self.cookie_name = ("__Host-" if origins.secure else "") + apps.cookie_name
        # Both spellings are the broker's: neither reaches an app, either way.
        self.reserved_cookies = {apps.cookie_name, "__Host-" + apps.cookie_name}

    async def handle(self, request: web.Request, session_id: str) -> web.StreamResponse:
        """Answer a request under `RESERVED_PREFIX`; `BrokerError` for refusals."""
        path, method = request.path, request.method
        if path == EXCHANGE_PATH:
            if method != "POST":
                return error_page(request, 405, "Method not allowed", "method_not_allowed")
            resp: web.StreamResponse = await self._exchange(request, session_id)
        elif path in (ENTRY_PATH, ENTRY_SCRIPT_PATH):
            if method not in ("GET", "HEAD"):
                return error_page(request, 405, "Method not allowed", "method_not_allowed")
            if path == ENTRY_PATH:
                resp = web.Response(text=ENTRY_PAGE, content_type="text/html")
            else:
                resp = web.Response(text=ENTRY_SCRIPT, content_type="text/javascript")
        else:
            raise NotFound("Not found")
        resp.headers.update(OWN_HEADERS)
        return resp

    async def signed_in(self, request: web.Request, session_id: str) -> Session:
        """The active session ``session_id`` when the request carries its app
        cookie; `Unauthorized` (``not_signed_in``, ``session_ended``) otherwise."""
        return await self._broker.credentials.app_session(session_id, self.cookie_values(request))

    def cookie_values(self, request: web.Request) -> list[str]:
        """Every value of the broker cookie the request carries (an app on a
        sibling origin could add one more of the same name: all are tried)."""
        values = []
        for header in request.headers.getall("Cookie", []):
            for pair in header.split(";"):
                name, _, value = pair.strip().partition("=")
                if name == self.cookie_name and value:
                    values.append(value)
        return values

    async def _exchange(self, request: web.Request, session_id: str) -> web.Response:
        self._refuse_cross_origin(request)
        if request.content_type != "application/json":
            raise BadRequest("Send the viewer token as a JSON body", code="bad_content_type")
        token = await _token_from_body(request)
        credentials = self._broker.credentials
        cookies = self.cookie_values(request)
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
        if origin is not None and not same_origin(origin, self._origins.scheme, request.host):
            raise Forbidden("Cross-origin sign-in refused", code="cross_origin")
        if request.headers.get("Sec-Fetch-Site", "same-origin") != "same-origin":
            raise Forbidden("Cross-origin sign-in refused", code="cross_origin")

    def _cookie_header(self, value: str) -> str:
        parts = [f"{self.cookie_name}={value}", "Path=/", "HttpOnly"]
        parts.append(f"SameSite={self._samesite}")
        if self._origins.secure:
            parts.append("Secure")
        return "; ".join(parts)


async def _token_from_body(request: web.Request) -> str:
    raw = b""
    async for chunk in request.content.iter_any():
        raw += chunk
        if len(raw) > MAX_EXCHANGE_BODY:
            raise BadRequest("Request body too large")
    body = parse_json(raw or b"{}")
    token = body.get("token", "") if isinstance(body, dict) else None
    if not isinstance(token, str):
        raise BadRequest("'token' must be a string")
    return token


def _signed_in_response(session: Session) -> web.Response:
    body = json.dumps({"session_id": session.id, "location": "/"})
    return web.Response(text=body, content_type="application/json")
