"""Graceful shutdown: on SIGTERM a real broker process fails readiness first,
refuses new work with a clear 503, lets live streams run for the grace period,
then tells viewers SERVER_BUSY (reconnect elsewhere); sessions stay active."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import textwrap
from pathlib import Path

import aiohttp

from tests.conftest import AUDIENCE, ISSUER
from tests.processes import free_port, start_broker_process, wait_ready

WORKSPACES = """
[[workspaces]]
id = "ws-a"
name = "A"
type = "vnc"

[[workspaces]]
id = "ws-b"
name = "B"
type = "vnc"
"""


def write_config(tmp_path: Path, guacd_port: int, grace: float) -> Path:
    config = tmp_path / "broker.toml"
    config.write_text(
        textwrap.dedent(f"""
        [server]
        data_dir = "{tmp_path / "data"}"
        drain_grace_seconds = {grace}
        [auth]
        issuer = "{ISSUER}"
        audience = "{AUDIENCE}"
        [guacd]
        endpoints = ["127.0.0.1:{guacd_port}"]
        """)
        + WORKSPACES
    )
    return config


async def close_of(ws: aiohttp.ClientWebSocketResponse) -> tuple[int, str]:
    while True:
        msg = await ws.receive()
        if msg.type == aiohttp.WSMsgType.CLOSE:
            return int(msg.data), str(msg.extra)
        if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            return ws.close_code or 0, ""


async def drain_setup(tmp_path, guacd, token, grace):
    port = free_port()
    proc = start_broker_process(write_config(tmp_path, guacd.port, grace), port, tmp_path)
    await wait_ready(port, proc)
    base = f"http://127.0.0.1:{port}"
    http = aiohttp.ClientSession()
    headers = {"Authorization": f"Bearer {token()}"}
    async with http.post(f"{base}/api/workspaces/ws-a/launch", headers=headers) as r:
        launched = await r.json()
    url = (
        f"{base}/viewer/{launched['session_id']}/websocket-tunnel?token={launched['viewer_token']}"
    )
    ws = await http.ws_connect(url, protocols=("guacamole",))
    while "4.sync," not in await ws.receive_str(timeout=10):
        pass
    return proc, base, http, headers, launched, url, ws


async def wait_not_ready(http: aiohttp.ClientSession, base: str) -> dict:
    async def run() -> dict:
        while True:
            async with http.get(f"{base}/readyz") as r:
                if r.status == 503:
                    return dict(await r.json())
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(run(), 10)


async def test_sigterm_drains_then_closes_streams_with_server_busy(tmp_path, guacd, token):
    proc, base, http, headers, launched, url, ws = await drain_setup(tmp_path, guacd, token, 2.0)
    try:
        proc.send_signal(signal.SIGTERM)
        body = await wait_not_ready(http, base)
        assert body["checks"]["draining"]["ok"] is False
        async with http.post(f"{base}/api/workspaces/ws-b/launch", headers=headers) as r:
            assert r.status == 503 and "shutting down" in (await r.json())["detail"]
        late = await http.ws_connect(url, protocols=("guacamole",))
        assert await close_of(late) == (1008, "513")
        # The live stream goes on during the grace period: pings are still echoed.
        await ws.send_str("0.,4.ping,1.1;")
        while (await ws.receive_str(timeout=10)) != "0.,4.ping,1.1;":
            pass
        assert await asyncio.wait_for(close_of(ws), 20) == (1008, "513")
        assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        await http.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The session is still active: the viewer may reconnect to another replica.
    with sqlite3.connect(tmp_path / "data" / "broker.db") as db:
        (status,) = db.execute(
            "SELECT status FROM sessions WHERE id = ?", (launched["session_id"],)
        ).fetchone()
    assert status == "active"


async def test_second_signal_cuts_the_grace_period_short(tmp_path, guacd, token):
    proc, base, http, headers, launched, url, ws = await drain_setup(tmp_path, guacd, token, 600)
    try:
        proc.send_signal(signal.SIGTERM)
        await wait_not_ready(http, base)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(close_of(ws), 20) == (1008, "513")
        assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        await http.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
