"""Fix 4 of issue 12: a session whose viewers never get a first frame does not
hold the workspace. After a viewer tried a VNC server that cannot be reached,
the session shows the last connection error, and after
``[limits] connect_failed_seconds`` it ends ``connect_failed``: the workspace
can be launched again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from scripts.processes import free_port
from tests.integration.conftest import workspace
from tests.integration.servers import Server
from tests.integration.support import launch_viewer

pytestmark = pytest.mark.real_guacd


async def test_unreachable_session_ends_connect_failed(real_broker, password_file, token):
    server = Server("127.0.0.1", free_port())
    api = await real_broker(
        workspace("ws", "vnc", server, password_file=password_file("secret1")),
        BROKER_LIMITS_CONNECT_FAILED_SECONDS="3",
        BROKER_LIMITS_REAPER_INTERVAL_SECONDS="0.2",
    )
    t = token()
    viewer, session_id = await launch_viewer(api, t, "ws")
    await asyncio.wait_for(viewer.closed.wait(), 10)
    assert viewer.close_reason == "519"

    async def session() -> dict[str, Any]:
        r = await api.get(f"/api/sessions/{session_id}", t)
        assert r.status == 200, r.body
        body: dict[str, Any] = r.body
        return body

    async def until(check: Any, what: str, limit: float) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + limit
        while not check(body := await session()):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not within {limit} s: {what}; session: {body}")
            await asyncio.sleep(0.1)
        return body

    body = await until(lambda b: b["last_connect_error"], "the connection error recorded", 5)
    assert f"127.0.0.1:{server.port}" in body["last_connect_error"], body
    assert body["status"] == "active"  # held for now, the clock runs
    body = await until(lambda b: b["status"] == "terminated", "the session ended", 10)
    assert body["end_reason"] == "connect_failed", body
    assert body["last_connect_error"], body
    relaunched = await api.launch("ws", t)
    assert relaunched.status == 201, relaunched.body
    assert relaunched.body["session_id"] != session_id
