"""Browser WebSockets are only accepted from allowed origins (`broker.web.origins`):
the viewer page's own origin, ``server.public_url``, ``server.cors_origins``;
on an HTML5 app origin, that origin only. A refused handshake is a 403 before
any guacd or web-app connection; clients without ``Origin`` (not browsers)
are unaffected."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import pytest

from broker.web.origins import OriginPolicy, parse_origin, socket_origins
from tests.scrape import value
from tests.security.conftest import Env

pytestmark = pytest.mark.db


# -- the rule, pure ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),
        ("http://localhost:8080", True),
        ("http://LOCALHOST:8080/", True),
        ("https://broker.example.com", True),
        ("https://broker.example.com:443", True),
        ("https://portal.example.com", True),
        ("http://broker.example.com", False),  # another scheme is another origin
        ("https://broker.example.com:8443", False),
        ("https://evil.example.com", False),
        ("https://broker.example.com.evil.example", False),
        ("null", False),
        ("", False),
        ("https://user@broker.example.com", False),
        ("https://broker.example.com/path", False),
        ("file://", False),
    ],
)
def test_origin_rule(origin: str | None, allowed: bool) -> None:
    policy = OriginPolicy(
        "https://broker.example.com/", ["https://portal.example.com"], loopback=True
    )
    local = socket_origins(["http"], ("127.0.0.1", 8080))
    assert policy.allows(origin, local=local) is allowed


def test_app_origins_accept_only_themselves() -> None:
    policy = OriginPolicy("https://broker.example.com", ["https://portal.example.com"])
    own = parse_origin("https://a1.apps.example.com")
    assert policy.allows("https://a1.apps.example.com", local=set(), app_origin=own, app_host=True)
    for other in ("https://b2.apps.example.com", "https://broker.example.com"):
        assert not policy.allows(other, local=set(), app_origin=own, app_host=True)
    assert policy.allows(None, local=set(), app_origin=own, app_host=True)


def test_parse_origin_fills_default_ports() -> None:
    assert parse_origin("https://A.example") == ("https", "a.example", 443)
    assert parse_origin("http://[::1]:8080") == ("http", "::1", 8080)


# -- the viewer tunnel ---------------------------------------------------------------


async def open_tunnel(env: Env, origin: str | None, **kw: str) -> aiohttp.ClientWebSocketResponse:
    launched = await env.launch(kw.get("token", ""), "ws-shared")
    headers = {"Origin": origin} if origin else {}
    url = env.tunnel(launched["session_id"], launched["viewer_token"])
    return await env.client.ws_connect(url, protocols=("guacamole",), headers=headers)


async def streams(ws: aiohttp.ClientWebSocketResponse) -> bool:
    first = await ws.receive_str(timeout=10)
    await ws.close()
    return first.startswith("0.,36.")


async def test_viewer_page_origin_and_non_browsers_stream(env: Env, token: Callable[..., str]):
    t = token("alice")
    own = f"http://127.0.0.1:{env.port}"  # the TestClient addresses the broker by IP
    assert await streams(await open_tunnel(env, own, token=t))
    assert await streams(await open_tunnel(env, None, token=t))
    assert env.guacd.connections == 2


@pytest.mark.parametrize(
    "origin",
    ["http://evil.example", "null", "http://127.0.0.1:1", "https://127.0.0.1", "garbage"],
)
async def test_foreign_origin_is_refused_before_guacd(
    env: Env, token: Callable[..., str], origin: str
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await open_tunnel(env, origin, token=token("alice"))
    assert refused.value.status == 403
    assert env.guacd.connections == 0
    r = await env.client.get("/metrics")
    assert value(await r.text(), "broker_edge_refusals_total", reason="websocket_origin") == 1


async def test_configured_origins_are_accepted(make_env, token: Callable[..., str]) -> None:
    env: Env = await make_env(
        env={
            "BROKER_SERVER_PUBLIC_URL": "https://broker.example.com",
            "BROKER_SERVER_CORS_ORIGINS": "https://portal.example.com",
        }
    )
    t = token("alice")
    for origin in ("https://broker.example.com", "https://portal.example.com"):
        assert await streams(await open_tunnel(env, origin, token=t))
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await open_tunnel(env, "https://evil.example.com", token=t)


async def test_trusted_proxy_says_the_scheme(make_env, token: Callable[..., str]) -> None:
    env: Env = await make_env(env={"BROKER_SERVER_TRUSTED_PROXIES": "127.0.0.0/8"})
    t = token("alice")
    launched = await env.launch(t, "ws-shared")
    url = env.tunnel(launched["session_id"], launched["viewer_token"])
    host = f"127.0.0.1:{env.port}"
    ws = await env.client.ws_connect(
        url,
        protocols=("guacamole",),
        headers={"Origin": f"https://{host}", "X-Forwarded-Proto": "https"},
    )
    assert await streams(ws)
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await env.client.ws_connect(
            url, protocols=("guacamole",), headers={"Origin": f"https://{host}"}
        )


# -- HTML5 app origins ---------------------------------------------------------------


async def test_app_websocket_only_from_its_own_origin(env: Env, token: Callable[..., str]):
    alice = token("alice")
    a = await env.launch(alice, "ws-wiki-a")
    b = await env.launch(alice, "ws-wiki-b")
    browser = env.new_browser()
    for launched in (a, b):
        r = await env.sign_in(browser, launched["session_id"], launched["viewer_token"])
        assert r.status == 200
    a_origin = env.origin(a["session_id"])
    # Alice's other app (same site, her cookie would ride along) and the portal: refused.
    for origin in (env.origin(b["session_id"]), env.base, "null"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await browser.ws_connect(a_origin + "/ws", headers={"Origin": origin})
        assert refused.value.status == 403
    assert env.webapp.requests == []
    ws = await browser.ws_connect(a_origin + "/ws", headers={"Origin": a_origin})
    await ws.send_str("hello")
    assert await ws.receive_str(timeout=10) == "echo: hello"
    await ws.close()
    assert env.webapp.requests == ["GET /ws"]


async def test_plain_requests_are_not_origin_checked(env: Env, token: Callable[..., str]):
    """Only WebSocket handshakes are checked here; CORS governs /api."""
    r = await env.client.get("/api/me", headers={"Origin": "http://evil.example", **_auth(token)})
    assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers


def _auth(token: Callable[..., str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token('alice')}"}
