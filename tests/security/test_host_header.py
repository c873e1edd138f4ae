"""The ``Host`` header is checked (`broker.web.origins.OriginPolicy`): a request
naming a host that is neither ``server.public_url``'s, the address the
connection arrived on, an HTML5 app's host, nor (in development) a loopback
name gets a JSON 421 Misdirected Request. A DNS-rebinding page (a name its
owner points at the broker) cannot talk to it, and a WebSocket's ``Origin``
is compared with the configured origins, never with the ``Host`` the request
names."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import pytest

from tests.conftest import auth
from tests.security.conftest import Env

pytestmark = pytest.mark.db

PUBLIC = "https://broker.example.com"
STRICT = {"BROKER_SERVER_ALLOW_LOOPBACK_HOSTS": "false", "BROKER_SERVER_PUBLIC_URL": PUBLIC}


async def _status(env: Env, host: str, path: str = "/api/workspaces", **headers: str) -> int:
    r = await env.client.get(path, headers={"Host": host, **headers})
    if r.status == 421:
        body = await r.json()
        assert body["code"] == "misdirected_request" and body["detail"]
    return r.status


async def test_a_host_that_is_not_the_brokers_is_421(make_env, token: Callable[..., str]) -> None:
    env: Env = await make_env(env=STRICT)
    alice = auth(token("alice"))
    for host in (
        f"rebind.attacker.example:{env.port}",  # DNS rebinding: the attacker's name
        "attacker.example",
        f"localhost:{env.port}",  # loopback names only in development
        "broker.example.com:8443",  # public_url's name on another port
        "broker.example.com.attacker.example",
        "broker.example.com:abc",
        f"127.0.0.2:{env.port}",  # not the address the connection arrived on
    ):
        for path in ("/api/workspaces", "/healthz", "/", "/viewer/x"):
            assert await _status(env, host, path, **alice) == 421, (host, path)
    for host in ("broker.example.com", "BROKER.example.com:443", f"127.0.0.1:{env.port}"):
        assert await _status(env, host, **alice) == 200, host
    r = await env.client.get("/metrics")
    assert 'broker_edge_refusals_total{reason="misdirected"}' in await r.text()


async def test_development_names_and_app_hosts(make_env, token: Callable[..., str]) -> None:
    strict: Env = await make_env(env=STRICT)
    launched = await strict.launch(token("alice"), "ws-wiki-a")
    sid = launched["session_id"]
    # An app's host is the app's, not misdirected (no cookie: 401 from the proxy).
    assert await _status(strict, f"{sid}.localhost:{strict.port}", "/") == 401
    dev: Env = await make_env()  # the tests' settings: allow_loopback_hosts = true
    for host in (
        f"localhost:{dev.port}",
        "localhost",
        f"127.0.0.1:{dev.port}",
        f"[::1]:{dev.port}",
    ):
        assert await _status(dev, host, **auth(token("alice"))) == 200, host
    assert await _status(dev, f"rebind.attacker.example:{dev.port}") == 421


async def test_a_rebinding_page_cannot_open_a_viewer(make_env, token: Callable[..., str]) -> None:
    env: Env = await make_env(env=STRICT)
    launched = await env.launch(token("alice"), "ws-shared")
    url = env.tunnel(launched["session_id"], launched["viewer_token"])
    evil = f"rebind.attacker.example:{env.port}"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await env.client.ws_connect(
            url, protocols=("guacamole",), headers={"Host": evil, "Origin": f"http://{evil}"}
        )
    assert refused.value.status == 421
    assert env.guacd.connections == 0


async def test_websocket_origin_is_not_taken_from_the_host(
    make_env, token: Callable[..., str]
) -> None:
    """``Host: broker.example.com`` over plain HTTP used to make
    ``http://broker.example.com`` an allowed origin; only public_url's is."""
    env: Env = await make_env(env=STRICT)
    launched = await env.launch(token("alice"), "ws-shared")
    url = env.tunnel(launched["session_id"], launched["viewer_token"])
    host = {"Host": "broker.example.com"}
    for origin in ("http://broker.example.com", f"http://localhost:{env.port}"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await env.client.ws_connect(
                url, protocols=("guacamole",), headers={**host, "Origin": origin}
            )
        assert refused.value.status == 403, origin
    assert env.guacd.connections == 0
    ws = await env.client.ws_connect(
        url, protocols=("guacamole",), headers={**host, "Origin": PUBLIC}
    )
    assert (await ws.receive_str(timeout=10)).startswith("0.,36.")
    await ws.close()
