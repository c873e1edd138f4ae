"""Proxying to the app: what the browser and the app see, both ways, and the
requests refused before the app is contacted."""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import WSMsgType
from sqlalchemy import update

from broker.core.models import Session
from broker.web.http import BROKER
from broker.web.origins import app_entry_url
from protocols.simulated.webapp import BIG_DEFAULT_SIZE, big_body
from tests.broker.apps.support import TIMEOUT, cookie_attributes

pytestmark = pytest.mark.db


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


async def test_only_the_connect_target_is_proxied_never_the_displayed_address(env, token):
    sid, viewer_token = await env.launch(token())
    browser = env.new_browser()
    await env.sign_in(browser, sid, viewer_token)
    db = env.client.app[BROKER].db
    async with db() as s, s.begin():  # as before its grant is recorded, with an address shown
        await s.execute(
            update(Session)
            .where(Session.id == sid)
            .values(
                ip_address="127.0.0.1",
                tunnel_status="pending",
                grant_id=None,
                target_host=None,
                target_port=None,
            )
        )
    async with browser.get(env.origin(sid) + "/") as r:
        assert r.status == 503 and (await r.json())["code"] == "tunnel_not_ready"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await browser.ws_connect(env.origin(sid) + "/ws", origin=env.origin(sid))
    assert refused.value.status == 503
    assert env.webapp.requests == []


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
