from __future__ import annotations

import pytest

from tests.conftest import auth

pytestmark = pytest.mark.db


async def test_launch_then_list(client, token):
    t = token()
    r = await client.post("/api/workspaces/ws-linux-desktop/launch", headers=auth(t))
    assert r.status == 201, await r.text()
    body = await r.json()
    r = await client.get("/api/sessions", headers=auth(t))
    sessions = await r.json()
    assert [s["id"] for s in sessions] == [body["session_id"]]
