"""The simulated HTML5 web app shows exactly what its docstring promises, so the
proxy tests and the browser test can rely on those texts."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import WSMsgType

from protocols.simulated.webapp import BIG_DEFAULT_SIZE, SimulatedWebApp, big_body


@pytest.fixture
async def webapp() -> AsyncIterator[SimulatedWebApp]:
    app = SimulatedWebApp()
    await app.start("127.0.0.1", 0)
    yield app
    await app.aclose()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_home_page_has_absolute_link_form_and_external_script(webapp, http):
    async with http.get(webapp.url + "/") as r:
        assert r.status == 200 and r.content_type == "text/html"
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        page = await r.text()
    assert "<title>Team Wiki</title>" in page
    assert '<p id="greeting">Welcome to the simulated team wiki.</p>' in page
    assert '<a id="about-link" href="/about">About this wiki</a>' in page
    assert '<form id="name-form" method="post" action="/submit">' in page
    assert '<script src="/static/app.js" defer></script>' in page
    assert not re.search(r"<script(?![^>]*\bsrc=)", page), "no inline scripts"
    async with http.get(webapp.url + "/static/app.js") as r:
        script = await r.text()
    assert r.content_type == "text/javascript"
    assert 'ws.send("hello")' in script and '"/ws"' in script


async def test_about_and_form(webapp, http):
    async with http.get(webapp.url + "/about") as r:
        assert '<p id="about">This wiki is served by the simulated web app.</p>' in await r.text()
    async with http.post(webapp.url + "/submit", data={"name": "Ada <Lovelace>"}) as r:
        assert '<p id="thanks">Thanks, Ada &lt;Lovelace&gt;!</p>' in await r.text()
    async with http.post(webapp.url + "/submit", data={"name": ""}) as r:
        assert "Thanks, anonymous!" in await r.text()
    assert webapp.requests == ["GET /about", "POST /submit", "POST /submit"]


async def test_websocket_echoes_text_and_binary_and_closes_on_request(webapp, http):
    async with http.ws_connect(webapp.url + "/ws") as ws:
        await ws.send_str("hello")
        assert await ws.receive_str(timeout=5) == "echo: hello"
        await ws.send_bytes(b"\x00\xff")
        assert await ws.receive_bytes(timeout=5) == b"\x00\xff"
        await ws.send_str("close")
        msg = await ws.receive(timeout=5)
        assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 4001, "bye")
    await webapp.ws_closes.get()  # the app saw it end


async def test_headers_echo_and_streamed_bodies(webapp, http):
    async with http.get(webapp.url + "/headers?x=1", headers={"X-Test": "yes"}) as r:
        seen = await r.json()
    assert seen["path"] == "/headers" and seen["query"] == "x=1"
    assert seen["headers"]["x-test"] == "yes"
    async with http.get(webapp.url + "/big") as r:
        assert "Content-Length" not in r.headers
        body = await r.read()
    assert len(body) == BIG_DEFAULT_SIZE and body == big_body(BIG_DEFAULT_SIZE)
    assert r.headers["X-Body-SHA256"] == hashlib.sha256(body).hexdigest()
    data = bytes(range(256)) * 1000
    async with http.put(webapp.url + "/echo", data=data) as r:
        assert await r.json() == {
            "method": "PUT",
            "length": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    async with http.get(webapp.url + "/events") as r:
        assert await r.content.readline() == b"data: tick 1\n"


async def test_redirect_points_at_its_own_address_and_cookies(webapp, http):
    async with http.get(webapp.url + "/redirect", allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"] == webapp.url + "/about"
    async with http.get(webapp.url + "/set-cookie?name=other") as r:
        cookies = r.headers.getall("Set-Cookie")
    assert sorted(c.split(";")[0] for c in cookies) == ["app_pref=dark", "other=from-app"]


async def test_listens_on_a_simulated_peer_address(http):
    app = SimulatedWebApp()
    await app.start("127.64.0.21", 0)
    try:
        assert app.url.startswith("http://127.64.0.21:")
        async with http.get(app.url + "/") as r:
            assert r.status == 200
    finally:
        await app.aclose()


async def test_close_ends_open_websockets_and_streams_promptly(http):
    app = SimulatedWebApp()
    await app.start("127.0.0.1", 0)
    ws = await http.ws_connect(app.url + "/ws")
    events = await http.get(app.url + "/events")
    await app.aclose()
    msg = await ws.receive(timeout=5)
    assert msg.type == WSMsgType.CLOSE and msg.data == 1001
    await ws.close()
    assert (await events.read()).startswith(b"data: tick 1\n\n")  # ended, not hanging
    events.release()
