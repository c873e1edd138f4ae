"""Fix 5 of issue 12 against two real guacd processes: viewers are spread
over the healthy guacds, one SIGKILLed mid-run is skipped (readiness holds,
its metric drops to 0, new viewers reach a frame on the other), and with both
dead ``/readyz`` fails naming guacd and a launch is a 503 that leaves no
session behind."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.web.http import BROKER
from protocols.guacd_pool import GuacdPool
from tests.integration import servers
from tests.integration.conftest import unavailable, workspace
from tests.integration.servers import Endpoint, Running
from tests.integration.support import launch_viewer
from tests.scrape import value

pytestmark = pytest.mark.real_guacd


@pytest.fixture
def two_guacds(tmp_path: Path) -> Iterator[list[tuple[Running, Endpoint]]]:
    """Two guacd 1.5.5 processes of this test's own (it kills them)."""
    binary = servers.guacd_binary()
    if binary is None:
        unavailable(servers.HOW_TO_GET_GUACD)
    started: list[tuple[Running, Endpoint]] = []
    try:
        for name in ("a", "b"):
            where = tmp_path / f"guacd-{name}"
            where.mkdir()
            started.append(servers.start_guacd(binary, where))
        yield started
    finally:
        for running, _ in started:
            running.stop()


def healthy(pool: GuacdPool, port: int) -> bool | None:
    (state,) = [s for s in pool.states() if s.endpoint.port == port]
    return state.healthy


async def metrics(api) -> str:
    return await (await api.client.get("/metrics")).text()


def kill(running: Running) -> None:
    for proc in running.processes:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)


async def test_a_killed_guacd_is_skipped_and_both_down_is_not_ready(
    real_broker, two_guacds, vnc_server, password_file, token
):
    (run_a, a), (run_b, b) = two_guacds
    secret = password_file(vnc_server.password)
    api = await real_broker(
        "".join(workspace(f"ws-{n}", "vnc", vnc_server, password_file=secret) for n in "1234"),
        BROKER_GUACD_ENDPOINTS=f"{a.host}:{a.port},{b.host}:{b.port}",
        BROKER_GUACD_HEALTH_CHECK_SECONDS="0.5",
    )
    pool = api.client.app[BROKER].guacd
    assert pool is not None
    await pool.wait_for(lambda: healthy(pool, a.port) and healthy(pool, b.port), 10)
    assert (await api.get("/readyz", validate=False)).status == 200
    t = token()

    # Two viewers on two sessions: one on each guacd.
    viewers, on = [], {}
    for ws in ("ws-1", "ws-2"):
        viewer, session_id = await launch_viewer(api, t, ws)
        viewers.append(viewer)
        await viewer.first_frame()
        (live,) = pool.live(session_id)
        on[ws] = live.endpoint.port
    try:
        assert sorted(on.values()) == sorted([a.port, b.port]), on
        text = await metrics(api)
        for e in (a, b):
            live = value(text, "broker_guacd_live_connections", endpoint=f"{e.host}:{e.port}")
            assert live == 1

        # guacd a is SIGKILLed: skipped, the broker stays ready.
        kill(run_a)
        await pool.wait_for(lambda: healthy(pool, a.port) is False, 10)
        assert (await api.get("/readyz", validate=False)).status == 200
        text = await metrics(api)
        assert value(text, "broker_guacd_healthy", endpoint=f"{a.host}:{a.port}") == 0
        assert value(text, "broker_guacd_healthy", endpoint=f"{b.host}:{b.port}") == 1
        viewer, session_id = await launch_viewer(api, t, "ws-3")
        viewers.append(viewer)
        await viewer.first_frame()
        assert [c.endpoint.port for c in pool.live(session_id)] == [b.port]

        # Both dead: not ready (naming guacd), and a launch fails fast.
        kill(run_b)
        await pool.wait_for(lambda: not pool.healthy(), 10)
        ready = await api.get("/readyz", validate=False)
        assert ready.status == 503 and "guacd" in ready.body["detail"], ready.body
        before = await api.get("/api/sessions", t)
        assert len(before.body) == 3
        r = await api.launch("ws-4", t)  # never launched before
        assert r.status == 503 and r.body["code"] == "guacd_unavailable", r.body
        after = await api.get("/api/sessions", t)
        assert [s["id"] for s in after.body] == [s["id"] for s in before.body], after.body
        assert "ws-4" not in {s["workspace_id"] for s in after.body}
    finally:
        for viewer in viewers:
            await viewer.close()
