"""The end of a session or of the broker ends what is being proxied: open
WebSockets close, streaming answers are cut off, the next request is refused."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import WSMsgType
from sqlalchemy import update

from broker.core.models import Session
from broker.web.http import BROKER
from tests.broker.apps.support import TIMEOUT

pytestmark = pytest.mark.db


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


async def test_shutdown_ends_desktop_viewers_and_proxied_websockets_alike(make_env, guacd, token):
    """One registry, one shutdown hook: a remote-desktop viewer and a proxied
    WebSocket open on the same broker both end when it stops, each the way
    its client understands (the viewer: SERVER_BUSY, reconnect elsewhere)."""
    env = await make_env(env={"BROKER_GUACD_ENDPOINTS": f"127.0.0.1:{guacd.port}"})
    t = token()
    sid, viewer_token = await env.launch(t)
    desktop_sid, desktop_token = await env.launch(t, "ws-windows")
    browser = env.new_browser()
    await env.sign_in(browser, sid, viewer_token)
    tunnel = f"/viewer/{desktop_sid}/websocket-tunnel?token={desktop_token}"
    viewer = await browser.ws_connect(
        f"http://localhost:{env.port}{tunnel}", protocols=("guacamole",)
    )
    while "4.sync," not in await viewer.receive_str(timeout=TIMEOUT):
        pass
    proxied = await browser.ws_connect(env.origin(sid) + "/ws")
    await proxied.send_str("ping")
    assert await proxied.receive_str(timeout=TIMEOUT) == "echo: ping"
    assert env.client.app[BROKER].streams.count() == 2

    stopping = asyncio.ensure_future(env.client.close())
    closed = await proxied.receive(timeout=TIMEOUT)
    assert (closed.data, closed.extra) == (1001, "broker shutting down")
    while (msg := await viewer.receive(timeout=TIMEOUT)).type == WSMsgType.TEXT:
        pass
    assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 1008, "513")
    await asyncio.wait_for(stopping, TIMEOUT)
    await proxied.close()
    await viewer.close()
