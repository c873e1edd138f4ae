"""Race safety: the database decides, one writer wins, state stays consistent."""

from __future__ import annotations

import asyncio

import pytest

from tests.broker.apiclient import Api

pytestmark = pytest.mark.db


@pytest.fixture
def api(client):
    return Api(client)


async def test_twenty_concurrent_launches_give_one_session(api, token):
    alice, bob = token("alice"), token("bob")
    results = await asyncio.gather(
        *(api.launch("ws-linux-desktop", alice if i % 2 else bob) for i in range(20))
    )
    statuses = sorted(r.status for r in results)
    assert set(statuses) <= {200, 201, 409}, statuses
    assert statuses.count(201) == 1
    winner = next(r for r in results if r.status == 201)
    winner_ids = {r.body["session_id"] for r in results if r.status in (200, 201)}
    assert winner_ids == {winner.body["session_id"]}
    admin = token("root", roles=["admin"])
    active = (await api.get("/api/admin/sessions", admin, params={"status": "active"})).body
    assert [s["id"] for s in active] == [winner.body["session_id"]]
    # The loser's user sees nothing; every 409 says why.
    assert all("in use" in r.body["detail"] for r in results if r.status == 409)
    launches = (
        await api.get("/api/admin/audit", admin, params={"action": "launch_workspace"})
    ).body
    assert len(launches) == 1


async def test_disconnect_and_stop_race_has_one_winner(api, token):
    for _ in range(5):
        t = token("alice")
        sid = (await api.launch("ws-windows", t)).body["session_id"]
        disc, stop = await asyncio.gather(
            api.post(f"/api/sessions/{sid}/disconnect", t),
            api.post("/api/workspaces/ws-windows/stop", t),
        )
        assert sorted([disc.status, stop.status]) == [200, 409]
        s = (await api.get(f"/api/sessions/{sid}", t)).body
        expected = "disconnected" if disc.status == 200 else "terminated"
        assert s["status"] == expected and s["ended_at"] is not None
        audit = (await api.get("/api/audit", t, params={"session": sid})).body
        ends = [e["action"] for e in audit if e["action"] != "launch_workspace"]
        assert ends == (["disconnect_session"] if disc.status == 200 else ["stop_workspace"])
