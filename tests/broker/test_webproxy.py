"""HTML5 workspaces end to end over real sockets: the broker on loopback, the
simulated web app behind it, and aiohttp clients acting as the browser (a
resolver sends ``*.localhost`` to 127.0.0.1 and a real cookie jar scopes the
app cookie to its origin, as Chromium does).

The flow a browser test follows, with the broker at ``http://localhost:<port>``:
launch → ``GET /viewer/<id>/info`` gives ``app_url`` =
``http://<id>.localhost:<port>/__broker/enter`` → open ``app_url#token=<viewer
token>`` → the page POSTs the token to ``/__broker/session`` and goes to ``/``,
which shows the simulated app (texts in `protocols.simulated_webapp`).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient
from sqlalchemy import update

from broker.config import Settings
from broker.core.models import Session
from broker.web.http import BROKER
from broker.web.origins import app_entry_url
from protocols.simulated.webapp import BIG_DEFAULT_SIZE, SimulatedWebApp, big_body
from tests.broker.apiclient import Api
from tests.conftest import auth
from tests.localhost import LocalhostResolver

pytestmark = pytest.mark.db

TIMEOUT = 10  # generous bound for anything awaited; nothing here sleeps


def workspaces(app_port: int, down_port: int) -> str:
    return f"""
[[workspaces]]
id = "ws-wiki"
name = "Team Wiki"
type = "html5"
port = {app_port}

[[workspaces]]
id = "ws-wiki-2"
name = "Second Wiki"
type = "html5"
port = {app_port}

[[workspaces]]
id = "ws-down"
name = "Stopped App"
type = "html5"
port = {down_port}

[[workspaces]]
id = "ws-windows"
name = "Windows Server"
type = "rdp"
"""


@dataclass
class Env:
    client: TestClient[web.Request, web.Application]
    settings: Settings
    webapp: SimulatedWebApp
    api: Api
    urls: list[str]  # every URL a simulated browser requested
    new_browser: Callable[[], aiohttp.ClientSession]

    @property
    def port(self) -> int:
        port = self.client.port
        assert port is not None
        return port

    def origin(self, session_id: str) -> str:
        return f"http://{session_id}.localhost:{self.port}"

    async def launch(self, token: str, workspace: str = "ws-wiki") -> tuple[str, str]:
        r = await self.api.launch(workspace, token)
        assert r.status in (200, 201), r.body
        return r.body["session_id"], r.body["viewer_token"]

    async def sign_in(
        self, browser: aiohttp.ClientSession, session_id: str, viewer_token: str
    ) -> aiohttp.ClientResponse:
        """What the entry page does in a browser: load, then POST the fragment's token."""
        entry = app_entry_url(self.settings, session_id, f"localhost:{self.port}")
        async with browser.get(entry) as page:
            assert page.status == 200
        async with browser.get(self.origin(session_id) + "/__broker/enter.js") as script:
            assert script.status == 200
        r = await browser.post(
            self.origin(session_id) + "/__broker/session",
            json={"token": viewer_token},
            headers={"Origin": self.origin(session_id), "Sec-Fetch-Site": "same-origin"},
        )
        await r.read()
        return r


@pytest.fixture(autouse=True)
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Ending streams early (session end, shutdown, a browser leaving) is normal
    operation: it must not be logged as an error."""
    yield
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


@pytest.fixture
async def webapp() -> AsyncIterator[SimulatedWebApp]:
    app = SimulatedWebApp()
    await app.start("127.0.0.1", 0)
    yield app
    await app.aclose()


@pytest.fixture
def down_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
async def browsers() -> AsyncIterator[tuple[list[str], Callable[[], aiohttp.ClientSession]]]:
    urls: list[str] = []
    sessions: list[aiohttp.ClientSession] = []

    async def record(_s: Any, _ctx: Any, params: aiohttp.TraceRequestStartParams) -> None:
        urls.append(str(params.url))

    def new() -> aiohttp.ClientSession:
        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(record)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=LocalhostResolver()),
            trace_configs=[trace],
            timeout=aiohttp.ClientTimeout(total=TIMEOUT),
        )
        sessions.append(session)
        return session

    yield urls, new
    for session in sessions:
        await session.close()


@pytest.fixture
def make_env(start_broker, make_settings, webapp, down_port, browsers):
    async def make(extra: str = "") -> Env:
        settings = make_settings(extra, workspaces=workspaces(webapp.port, down_port))
        client = await start_broker(settings)
        return Env(client, settings, webapp, Api(client), *browsers)

    return make


@pytest.fixture
async def env(make_env) -> Env:
    result: Env = await make_env()
    return result


def cookie_attributes(set_cookie: str) -> tuple[str, dict[str, str]]:
    first, *attrs = [p.strip() for p in set_cookie.split(";")]
    return first.partition("=")[0], {
        a.partition("=")[0].lower(): a.partition("=")[2] for a in attrs
    }


# -- the user's path -------------------------------------------------------------


async def test_workspace_loads_follows_link_submits_form_and_echoes(env, token, caplog):
    caplog.set_level(logging.DEBUG)
    sid, viewer_token = await env.launch(token())
    browser = env.new_browser()
    origin = env.origin(sid)

    entry = app_entry_url(env.settings, sid, f"localhost:{env.port}")
    assert entry == f"{origin}/__broker/enter"
    async with browser.get(entry) as page:
        text = await page.text()
        assert '<script src="/__broker/enter.js" defer></script>' in text
        csp = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert page.headers["Cache-Control"] == "no-store"

    signed_in = await env.sign_in(browser, sid, viewer_token)
    assert signed_in.status == 200
    assert await signed_in.json() == {"session_id": sid, "location": "/"}
    (set_cookie,) = signed_in.headers.getall("Set-Cookie")
    name, attrs = cookie_attributes(set_cookie)
    assert name == "broker_app"
    assert attrs == {"path": "/", "httponly": "", "samesite": "Lax"}  # no Secure on http
    assert [c.key for c in browser.cookie_jar] == ["broker_app"]

    async with browser.get(origin + "/") as home:
        assert home.status == 200
        page = await home.text()
    assert '<p id="greeting">Welcome to the simulated team wiki.</p>' in page
    assert 'href="/about"' in page
    async with browser.get(origin + "/about") as about:
        assert "This wiki is served by the simulated web app." in await about.text()
    async with browser.post(origin + "/submit", data={"name": "Ada"}) as thanks:
        assert '<p id="thanks">Thanks, Ada!</p>' in await thanks.text()
    async with browser.get(origin + "/static/app.js") as script:
        assert 'ws.send("hello")' in await script.text()
    async with browser.ws_connect(origin + "/ws") as ws:
        await ws.send_str("hello")
        assert await ws.receive_str(timeout=TIMEOUT) == "echo: hello"
        await ws.send_bytes(b"\x01\x02")
        assert await ws.receive_bytes(timeout=TIMEOUT) == b"\x01\x02"
    assert await asyncio.wait_for(env.webapp.ws_closes.get(), TIMEOUT) == 1000
    async with browser.ws_connect(origin + "/ws") as ws:
        await ws.send_str("close")  # the app closes: the browser hears its code and reason
        closed = await ws.receive(timeout=TIMEOUT)
        assert (closed.type, closed.data, closed.extra) == (WSMsgType.CLOSE, 4001, "bye")

    assert env.webapp.requests == [
        "GET /",
        "GET /about",
        "POST /submit",
        "GET /static/app.js",
        "GET /ws",
        "GET /ws",
    ]
    assert not any(viewer_token in url for url in env.urls)
    assert not any(viewer_token in r.getMessage() for r in caplog.records)


async def test_viewer_info_sends_html5_viewers_to_the_entry_url(env, token):
    t = token()
    sid, _ = await env.launch(t)
    r = await env.client.get(f"/viewer/{sid}/info", headers=auth(t))
    body = await r.json()
    assert body["app_url"] == f"http://{sid}.localhost:{env.port}/__broker/enter"


async def test_app_sees_no_broker_credentials_and_is_told_where_the_request_came_from(env, token):
    t = token()
    sid, viewer_token = await env.launch(t)
    browser = env.new_browser()
    await env.sign_in(browser, sid, viewer_token)
    (broker_cookie,) = [c.value for c in browser.cookie_jar]
    origin = env.origin(sid)
    sent = {
        "Cookie": f"theme=dark; broker_app={broker_cookie}; lang=en",
        "Authorization": f"Bearer {t}",
        "Connection": "keep-alive, X-Secret-Hop",
        "X-Secret-Hop": "hop",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Host": "evil.example",
        "Forwarded": "for=203.0.113.9",
        "X-App-Header": "kept",
    }
    async with browser.get(origin + "/headers?q=1", headers=sent) as r:
        seen = await r.json()
    headers = seen["headers"]
    assert seen["query"] == "q=1"
    assert sorted(headers["cookie"].split("; ")) == ["lang=en", "theme=dark"]
    for name in ("authorization", "x-secret-hop", "keep-alive", "te", "proxy-authorization"):
        assert name not in headers, name
    assert "forwarded" not in headers
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == f"{sid}.localhost:{env.port}"
    assert headers["host"] == f"{sid}.localhost:{env.port}"
    assert headers["x-app-header"] == "kept"

    for credential in (viewer_token, broker_cookie):
        async with browser.get(
            origin + "/headers", headers={"Authorization": f"Bearer {credential}"}
        ) as r:
            assert "authorization" not in (await r.json())["headers"]
    app_own = "Bearer app-own-token"
    async with browser.get(origin + "/headers", headers={"Authorization": app_own}) as r:
        assert (await r.json())["headers"]["authorization"] == app_own


async def test_bodies_stream_both_ways(env, token):
    sid, viewer_token = await env.launch(token())
    browser = env.new_browser()
    await env.sign_in(browser, sid, viewer_token)
    origin = env.origin(sid)

    async with browser.get(origin + "/big") as r:
        assert r.headers.get("Transfer-Encoding") == "chunked"
        body = await r.read()
    assert len(body) == BIG_DEFAULT_SIZE and body == big_body(BIG_DEFAULT_SIZE)
    assert r.headers["X-Body-SHA256"] == hashlib.sha256(body).hexdigest()

    upload = bytes(range(256)) * 12_000  # 3 MB

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(upload), 65536):
            yield upload[start : start + 65536]

    expected = {"length": len(upload), "sha256": hashlib.sha256(upload).hexdigest()}
    for method, data in (("PUT", io.BytesIO(upload)), ("PATCH", chunked())):
        async with browser.request(method, origin + "/echo", data=data) as r:
            assert await r.json() == {"method": method, **expected}
    async with browser.delete(origin + "/echo") as r:
        assert (await r.json())["method"] == "DELETE"
    async with browser.head(origin + "/about") as r:
        assert r.status == 200

    # An endless stream: its first event arrives, so nothing is buffered whole.
    async with browser.get(origin + "/events") as r:
        assert r.content_type == "text/event-stream"
        assert await r.content.readline() == b"data: tick 1\n"


async def test_redirects_and_app_cookies(env, token):
    sid, viewer_token = await env.launch(token())
    browser = env.new_browser()
    await env.sign_in(browser, sid, viewer_token)
    origin = env.origin(sid)

    async with browser.get(origin + "/redirect", allow_redirects=False) as r:
        assert r.status == 302
        assert r.headers["Location"] == origin + "/about"
    async with browser.get(origin + "/redirect") as r:
        assert "This wiki is served by the simulated web app." in await r.text()

    broker_cookie = [c.value for c in browser.cookie_jar if c.key == "broker_app"]
    async with browser.get(origin + "/set-cookie?name=broker_app") as r:
        names = sorted(c.split("=")[0] for c in r.headers.getall("Set-Cookie"))
    assert names == ["app_pref"]  # the app cannot overwrite the broker's cookie
    assert [c.value for c in browser.cookie_jar if c.key == "broker_app"] == broker_cookie
    async with browser.get(origin + "/headers") as r:
        assert (await r.json())["headers"]["cookie"] == "app_pref=dark"
    # An app cannot reach the other sessions' origins with a parent-domain cookie.
    async with browser.get(origin + "/set-cookie?domain=localhost") as r:
        (wide,) = [c for c in r.headers.getall("Set-Cookie") if c.startswith("app_wide=")]
    assert cookie_attributes(wide) == ("app_wide", {"path": "/"})


# -- refusals --------------------------------------------------------------------


async def test_without_a_valid_cookie_nothing_reaches_the_app(env, token):
    sid, viewer_token = await env.launch(token("alice"))
    other_sid, other_viewer = await env.launch(token("bob"), "ws-wiki-2")
    stranger = env.new_browser()
    origin = env.origin(sid)

    async with stranger.get(origin + "/", headers={"Accept": "text/html"}) as r:
        assert r.status == 401 and r.content_type == "text/html"
        assert "You are not signed in to this workspace" in await r.text()
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    async with stranger.post(origin + "/submit", data={"name": "x"}) as r:
        assert r.status == 401
        assert (await r.json())["code"] == "not_signed_in"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await stranger.ws_connect(origin + "/ws")
    assert refused.value.status == 401

    bob = env.new_browser()
    assert (await env.sign_in(bob, other_sid, other_viewer)).status == 200
    (bobs_cookie,) = [c.value for c in bob.cookie_jar]
    for cookie in (bobs_cookie, "forged-value", ""):
        async with stranger.get(origin + "/", headers={"Cookie": f"broker_app={cookie}"}) as r:
            assert r.status == 401
    assert env.webapp.requests == []

    # Bob's own origin works with his cookie.
    async with bob.get(env.origin(other_sid) + "/about") as r:
        assert r.status == 200
    assert env.webapp.requests == ["GET /about"]
    assert viewer_token  # alice's token was never used: nobody signed in as her


async def test_only_this_html5_sessions_viewer_token_signs_in_and_only_once(env, token):
    sid, viewer_token = await env.launch(token("alice"))
    rdp_sid, rdp_token = await env.launch(token("alice"), "ws-windows")
    browser = env.new_browser()

    refused = await env.sign_in(browser, rdp_sid, rdp_token)
    assert refused.status == 403
    assert (await refused.json())["detail"] == "This session's workspace is not an HTML5 web app"
    assert (await env.sign_in(browser, sid, rdp_token)).status == 401
    assert (await env.sign_in(browser, rdp_sid, viewer_token)).status == 401
    assert (await env.sign_in(browser, sid, "not-a-token")).status == 401
    assert list(browser.cookie_jar) == []

    exchange = env.origin(sid) + "/__broker/session"
    for headers in (
        {"Origin": "http://evil.localhost"},
        {"Origin": env.origin(rdp_sid)},
        {"Sec-Fetch-Site": "same-site"},
    ):
        async with browser.post(exchange, json={"token": viewer_token}, headers=headers) as r:
            assert r.status == 403 and (await r.json())["code"] == "cross_origin"
    async with browser.post(exchange, data=f"token={viewer_token}") as r:
        assert r.status == 400
    async with browser.get(exchange) as r:
        assert r.status == 405

    assert (await env.sign_in(browser, sid, viewer_token)).status == 200
    # The same link again: this browser is signed in already, so that is fine ...
    assert (await env.sign_in(browser, sid, viewer_token)).status == 200
    # ... but nobody else can replay it.
    replay = await env.sign_in(env.new_browser(), sid, viewer_token)
    assert replay.status == 401
    assert (await replay.json())["code"] == "token_used"
    assert len(replay.headers.getall("Set-Cookie", [])) == 0
    # A fresh launch of the same session gives a fresh token that works.
    _, fresh = await env.launch(token("alice"))
    assert (await env.sign_in(env.new_browser(), sid, fresh)).status == 200
    # Each exchange is audited; the refused ones changed nothing.
    entries = (await env.api.get("/api/audit", token("alice"), params={"action": "open_app"})).body
    assert [(e["session_id"], e["client_ip"]) for e in entries] == [(sid, "127.0.0.1")] * 2


async def test_app_origins_never_reach_the_brokers_routes(env, token):
    t = token()
    sid, viewer_token = await env.launch(t)
    browser = env.new_browser()
    origin = env.origin(sid)
    async with browser.get(origin + "/api/workspaces", headers=auth(t)) as r:
        assert r.status == 401 and (await r.json())["code"] == "not_signed_in"
    await env.sign_in(browser, sid, viewer_token)
    async with browser.get(origin + "/api/workspaces", headers=auth(t)) as r:
        assert r.status == 404  # the app's own 404: it was proxied, not answered by the broker
    assert env.webapp.requests == ["GET /api/workspaces"]
    async with browser.get(origin + "/__broker/anything") as r:
        assert r.status == 404
    async with browser.get(f"http://not-a-session.localhost:{env.port}/api/workspaces") as r:
        assert r.status == 404
        assert (await r.json())["detail"] == "There is no workspace at this address"
    async with browser.get(f"http://localhost:{env.port}/api/workspaces", headers=auth(t)) as r:
        assert r.status == 200  # the broker's own origin is unaffected


async def test_unreachable_app_is_a_502_with_a_clear_message(env, token):
    sid, viewer_token = await env.launch(token(), "ws-down")
    browser = env.new_browser()
    assert (await env.sign_in(browser, sid, viewer_token)).status == 200
    async with browser.get(env.origin(sid) + "/") as r:
        assert r.status == 502
        body = await r.json()
    assert body["code"] == "app_unreachable"
    assert "web app is not available" in body["detail"] and "cannot be reached" in body["detail"]
    async with browser.get(env.origin(sid) + "/", headers={"Accept": "text/html"}) as r:
        assert r.status == 502 and "cannot be reached" in await r.text()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await browser.ws_connect(env.origin(sid) + "/ws")
    assert refused.value.status == 502


async def test_requests_refused_before_any_upstream_connection(env, token):
    sid, viewer_token = await env.launch(token())
    browser = env.new_browser()
    await env.sign_in(browser, sid, viewer_token)
    origin = env.origin(sid)
    async with browser.get(origin + "/ws", headers={"Upgrade": "websocket"}) as r:
        assert r.status == 400  # not a valid WebSocket handshake
    sibling = f"http://{uuid.uuid4()}.localhost:{env.port}"  # another app, same site
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await browser.ws_connect(origin + "/ws", origin=sibling)
    assert refused.value.status == 403
    async with browser.ws_connect(origin + "/ws", origin=origin) as ws:
        await ws.send_str("same origin")
        assert await ws.receive_str(timeout=TIMEOUT) == "echo: same origin"
    db = env.client.app[BROKER].db
    async with db() as s, s.begin():  # the grant was lost
        await s.execute(update(Session).where(Session.id == sid).values(tunnel_status="failed"))
    async with browser.get(origin + "/") as r:
        assert r.status == 503 and (await r.json())["code"] == "tunnel_not_ready"
    assert env.webapp.requests == ["GET /ws"]  # only the same-origin WebSocket


async def test_request_bodies_over_the_limit_are_refused(make_env, token):
    env = await make_env("\n[apps]\nmax_request_bytes = 1024\n")
    sid, viewer_token = await env.launch(token())
    browser = env.new_browser()
    await env.sign_in(browser, sid, viewer_token)
    async with browser.put(env.origin(sid) + "/echo", data=b"x" * 2048) as r:
        assert r.status == 413
    assert env.webapp.requests == []
    async with browser.put(env.origin(sid) + "/echo", data=b"x" * 1024) as r:
        assert (await r.json())["length"] == 1024


# -- the end of a session ----------------------------------------------------------


async def test_session_end_closes_the_websocket_and_refuses_the_next_request(env, token):
    t = token()
    sid, viewer_token = await env.launch(t)
    browser = env.new_browser()
    await env.sign_in(browser, sid, viewer_token)
    origin = env.origin(sid)
    ws = await browser.ws_connect(origin + "/ws")
    await ws.send_str("ping")
    assert await ws.receive_str(timeout=TIMEOUT) == "echo: ping"
    events = await browser.get(origin + "/events")
    assert await events.content.readline() == b"data: tick 1\n"

    r = await env.api.post(f"/api/sessions/{sid}/disconnect", t)
    assert r.status == 200

    closed = await ws.receive(timeout=TIMEOUT)
    assert (closed.type, closed.data, closed.extra) == (WSMsgType.CLOSE, 4000, "session ended")
    assert await asyncio.wait_for(env.webapp.ws_closes.get(), TIMEOUT) == 1001
    with pytest.raises(aiohttp.ClientPayloadError):
        await asyncio.wait_for(events.read(), TIMEOUT)
    events.release()
    await ws.close()

    async with browser.get(origin + "/", headers={"Accept": "text/html"}) as r:
        assert r.status == 401
        assert "This workspace session has ended" in await r.text()
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await browser.ws_connect(origin + "/ws")
    assert env.webapp.requests == ["GET /ws", "GET /events"]


async def test_a_lost_end_event_is_caught_by_the_sweep(make_env, token):
    env = await make_env("\n[limits]\nreaper_interval_seconds = 0.05\n")
    sid, viewer_token = await env.launch(token())
    browser = env.new_browser()
    await env.sign_in(browser, sid, viewer_token)
    async with browser.ws_connect(env.origin(sid) + "/ws") as ws:
        db = env.client.app[BROKER].db
        async with db() as s, s.begin():  # ended elsewhere, no event reaches us
            await s.execute(update(Session).where(Session.id == sid).values(status="terminated"))
        closed = await ws.receive(timeout=TIMEOUT)
        assert (closed.data, closed.extra) == (4000, "session ended")


async def test_broker_shutdown_closes_proxied_websockets(env, token):
    sid, viewer_token = await env.launch(token())
    browser = env.new_browser()
    await env.sign_in(browser, sid, viewer_token)
    async with browser.ws_connect(env.origin(sid) + "/ws") as ws:
        stopping = asyncio.ensure_future(env.client.close())
        closed = await ws.receive(timeout=TIMEOUT)
        assert (closed.data, closed.extra) == (1001, "broker shutting down")
    await asyncio.wait_for(stopping, TIMEOUT)


# -- production-style origins ------------------------------------------------------


async def test_https_origins_get_a_secure_host_only_cookie(make_env, token):
    env = await make_env('\n[apps]\norigin_template = "https://{session}.apps.example.com"\n')
    sid, viewer_token = await env.launch(token())
    host = f"{sid}.apps.example.com"
    assert app_entry_url(env.settings, sid, "broker.example.com") == (
        f"https://{host}/__broker/enter"
    )
    # TLS ends in front of the broker; requests reach it with the public Host.
    headers = {"Host": host, "Origin": f"https://{host}"}
    r = await env.client.post("/__broker/session", json={"token": viewer_token}, headers=headers)
    assert r.status == 200
    name, attrs = cookie_attributes(r.headers["Set-Cookie"])
    assert name == "__Host-broker_app"
    assert attrs == {"path": "/", "httponly": "", "samesite": "Lax", "secure": ""}
    value = r.cookies[name].value
    page = await env.client.get("/", headers={"Host": host, "Cookie": f"{name}={value}"})
    assert "Welcome to the simulated team wiki." in await page.text()
    seen = await env.client.get(
        "/headers", headers={"Host": host, "Cookie": f"{name}={value}; a=b"}
    )
    headers_seen = (await seen.json())["headers"]
    assert headers_seen["x-forwarded-proto"] == "https"
    assert headers_seen["cookie"] == "a=b"
    # The plain name is not the credential on an https origin.
    plain = await env.client.get("/", headers={"Host": host, "Cookie": f"broker_app={value}"})
    assert plain.status == 401
