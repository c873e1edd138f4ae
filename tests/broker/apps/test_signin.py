"""Signing in to an app origin: the viewer token traded once for the app cookie,
who may, and what an app origin answers without it."""

from __future__ import annotations

import aiohttp
import pytest

from broker.web.origins import app_entry_url
from tests.broker.apps.support import cookie_attributes
from tests.conftest import auth

pytestmark = pytest.mark.db


async def test_viewer_info_sends_html5_viewers_to_the_entry_url(env, token):
    t = token()
    sid, _ = await env.launch(t)
    r = await env.client.get(f"/viewer/{sid}/info", headers=auth(t))
    body = await r.json()
    assert body["app_url"] == f"http://{sid}.localhost:{env.port}/__broker/enter"


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
