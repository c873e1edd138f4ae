"""A user sees, views and ends only their own sessions; other users' sessions
and unentitled workspaces do not exist for them (404, never 403)."""

from __future__ import annotations

import pytest

from tests.broker.apiclient import Api

pytestmark = pytest.mark.db


@pytest.fixture
def api(client):
    return Api(client)


async def test_other_users_session_is_not_found_everywhere(api, token):
    alice, bob = token("alice"), token("bob")
    launched = (await api.launch("ws-linux-desktop", alice)).body
    sid = launched["session_id"]
    assert (await api.get("/api/sessions", bob)).body == []
    assert (await api.get("/api/sessions/active", bob)).body == []
    r = await api.get(f"/api/sessions/{sid}", bob)
    assert (r.status, r.body["detail"]) == (404, "Session not found")
    r = await api.post(f"/api/sessions/{sid}/disconnect", bob)
    assert (r.status, r.body["detail"]) == (404, "Session not found")
    # Same answer as for a session that never existed.
    missing = "00000000-0000-4000-8000-000000000000"
    r2 = await api.post(f"/api/sessions/{missing}/disconnect", bob)
    assert (r2.status, r2.body) == (r.status, r.body)
    # Paging from someone else's session reveals nothing either.
    assert (await api.get("/api/sessions", bob, params={"before": sid})).status == 404
    assert (await api.get("/api/audit", bob)).body == []
    # Nothing bob did touched alice's session.
    assert (await api.get(f"/api/sessions/{sid}", alice)).body["status"] == "active"


async def test_admin_cannot_disconnect_as_user_but_can_terminate(api, token):
    sid = (await api.launch("ws-linux-desktop", token("alice"))).body["session_id"]
    admin = token("root", roles=["admin"])
    assert (await api.post(f"/api/sessions/{sid}/disconnect", admin)).status == 404
    assert (await api.get(f"/api/sessions/{sid}", admin)).status == 404
    assert (await api.post(f"/api/admin/sessions/{sid}/terminate", admin)).status == 200


async def test_unentitled_workspace_does_not_exist(api, token):
    plain, finance = token("alice"), token("fin", roles=["finance"])
    ids = [w["id"] for w in (await api.get("/api/workspaces", plain)).body]
    assert "ws-finance" not in ids
    for method, path in [
        ("GET", "/api/workspaces/ws-finance"),
        ("POST", "/api/workspaces/ws-finance/launch"),
        ("POST", "/api/workspaces/ws-finance/stop"),
    ]:
        r = await api.call(method, path, plain)
        assert (r.status, r.body["detail"]) == (404, "Workspace not found")
    assert "ws-finance" in [w["id"] for w in (await api.get("/api/workspaces", finance)).body]
    assert (await api.launch("ws-finance", finance)).status == 201
    # Still invisible (not "in use") to the unentitled user.
    assert (await api.launch("ws-finance", plain)).status == 404


async def test_malformed_ids_and_unknown_routes_are_json_404(api, token, client):
    t = token()
    for path in [
        "/api/sessions/not-a-uuid",
        "/api/sessions/../etc",
        "/api/nope",
        "/api/sessions/" + "a" * 500,
    ]:
        r = await api.get(path, t, validate=False)
        assert r.status == 404 and r.body["detail"]
    r = await api.call("DELETE", "/api/sessions", t, validate=False)
    assert r.status == 405 and r.body["detail"] == "Method not allowed"


async def test_malformed_body_is_400_and_changes_nothing(api, token):
    t = token()
    r = await api.post("/api/workspaces/ws-linux-desktop/launch", t, data=b"{not json")
    assert r.status == 400 and "JSON" in r.body["detail"]
    r = await api.post("/api/workspaces/ws-linux-desktop/launch", t, data=b"[1,2]")
    assert r.status == 400
    assert (await api.get("/api/sessions", t)).body == []


async def test_missing_token_is_401_with_challenge(api):
    r = await api.get("/api/sessions")
    assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.body["detail"]
