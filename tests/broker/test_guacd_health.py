"""guacd health as an operator and a user see it, with two simulated guacds
checked in the background: viewers go to the least-loaded healthy one, one
that dies is skipped and readiness holds, and with both down ``/readyz``
fails and launching a remote desktop is a 503 that leaves nothing behind."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from broker.web.http import BROKER
from protocols.guacd_pool import GuacdPool
from protocols.simulated.guacd import SimulatedGuacd
from tests.broker.apiclient import Api
from tests.broker.viewer_support import WORKSPACES, launch, open_tunnel, read_until
from tests.scrape import value

pytestmark = pytest.mark.db

StartGuacd = Callable[..., Awaitable[SimulatedGuacd]]


def healthy(pool: GuacdPool, port: int) -> bool | None:
    (state,) = [s for s in pool.states() if s.endpoint.port == port]
    return state.healthy


async def test_the_pool_follows_guacd_health(start_broker, make_settings, start_guacd, token):
    a, b = await start_guacd(first_frame_delay=0.05), await start_guacd(first_frame_delay=0.05)
    a_port, b_port = a.port, b.port
    settings = make_settings(
        f"""
        [guacd]
        endpoints = ["127.0.0.1:{a_port}", "127.0.0.1:{b_port}"]
        connect_timeout_seconds = 2
        health_check_seconds = 0.1
        """,
        workspaces=WORKSPACES,
        # The default test setting turns checks off; this test is about them.
        env={"BROKER_GUACD_HEALTH_CHECK_SECONDS": "0.1"},
    )
    api = Api(await start_broker(settings))
    pool = api.client.app[BROKER].guacd
    assert pool is not None
    t = token()
    assert (await api.get("/readyz", validate=False)).status == 200

    # Two viewers on two sessions: one on each guacd (the least loaded).
    viewers, sessions = [], []
    for workspace in ("ws-vnc", "ws-ssh"):
        launched = await launch(api, t, workspace)
        ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
        await read_until(ws, lambda f: "4.sync," in f)
        viewers.append(ws)
        sessions.append(launched["session_id"])
    assert (len(a.handshakes), len(b.handshakes)) == (1, 1)
    # Server-side, each viewer's guacd and connection id are known by session.
    (first,) = pool.live(sessions[0])
    (second,) = pool.live(sessions[1])
    assert (first.endpoint.port, second.endpoint.port) == (a_port, b_port)
    assert first.connection_id == a.handshakes[0].connection_id

    # guacd a dies mid-run: skipped, and the broker stays ready.
    await a.aclose()
    await pool.wait_for(lambda: healthy(pool, a_port) is False)
    assert (await api.get("/readyz", validate=False)).status == 200
    launched = await launch(api, t, "ws-locked")
    ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
    await read_until(ws, lambda f: "4.sync," in f)
    viewers.append(ws)
    assert len(b.handshakes) == 2
    text = await (await api.client.get("/metrics")).text()
    assert value(text, "broker_guacd_healthy", endpoint=f"127.0.0.1:{a_port}") == 0
    assert value(text, "broker_guacd_healthy", endpoint=f"127.0.0.1:{b_port}") == 1
    assert value(text, "broker_guacd_live_connections", endpoint=f"127.0.0.1:{b_port}") == 2
    assert value(text, "broker_guacd_failures_total", endpoint=f"127.0.0.1:{a_port}") is not None

    # Both down: not ready, and launching a remote desktop fails fast.
    await b.aclose()
    await pool.wait_for(lambda: not pool.healthy())
    ready = await api.get("/readyz", validate=False)
    assert ready.status == 503 and "guacd" in ready.body["detail"]
    before = await api.get("/api/sessions", t)
    r = await api.launch("ws-badpw", t)
    assert r.status == 503 and r.body["code"] == "guacd_unavailable"
    assert "guacd" in r.body["detail"]
    assert (await api.get("/api/sessions", t)).body == before.body  # nothing was created
    # A web app needs no guacd.
    assert (await api.launch("ws-wiki", t)).status == 201
    for ws in viewers:
        await ws.close()
