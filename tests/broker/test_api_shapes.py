"""The REST contract of DESIGN.md section 1, field for field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.broker.apiclient import Api

pytestmark = pytest.mark.db

SESSION_FIELDS = [
    "id",
    "user_id",
    "user_email",
    "workspace_id",
    "workspace_name",
    "workspace_type",
    "status",
    "started_at",
    "ended_at",
    "ip_address",
    "tunnel_status",
    "mfa_verified",
]


def parse(ts: str) -> datetime:
    # Exactly how the documented `requests` clients parse it.
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


@pytest.fixture
def api(client):
    return Api(client)


async def test_launch_returns_documented_shape(api, token):
    r = await api.launch("ws-linux-desktop", token("alice"))
    assert r.status == 201
    body = r.body
    assert list(body)[:6] == [
        "session_id",
        "workspace",
        "stream_url",
        "tunnel_status",
        "security",
        "viewer_token",
    ]
    assert uuid.UUID(body["session_id"]).version == 4
    assert body["stream_url"] == f"/viewer/{body['session_id']}"
    assert body["workspace"] == {
        "id": "ws-linux-desktop",
        "name": "Linux Desktop",
        "type": "linux",
        "status": "in_use",
        "description": "Linux over VNC",
        "protocol": "vnc",
    }
    assert body["tunnel_status"] == "direct"
    assert body["security"] == {
        "mfa_verified": True,
        "tunnel": "direct",
        "encrypted": False,
        "recording": False,
    }
    assert len(body["viewer_token"]) >= 32


async def test_session_object_fields_in_order_and_formats(api, token):
    t = token("alice", "alice@corp.example")
    before = datetime.now(UTC) - timedelta(seconds=1)
    sid = (await api.launch("ws-windows", t)).body["session_id"]
    r = await api.get("/api/sessions", t)
    assert r.status == 200 and isinstance(r.body, list)
    (s,) = r.body
    assert list(s)[: len(SESSION_FIELDS)] == SESSION_FIELDS
    assert list(s)[len(SESSION_FIELDS) :] == ["end_reason", "client_ip", "last_connect_error"]
    assert s["id"] == sid
    assert (s["user_id"], s["user_email"]) == ("alice", "alice@corp.example")
    assert (s["workspace_id"], s["workspace_name"], s["workspace_type"]) == (
        "ws-windows",
        "Windows Server",
        "rdp",
    )
    assert s["status"] == "active"
    assert s["ended_at"] is None and s["end_reason"] is None
    started = parse(s["started_at"])
    assert len(s["started_at"]) == len("2026-03-05T14:30:00.000Z")
    assert s["started_at"].endswith("Z")
    assert before <= started <= datetime.now(UTC)
    assert s["ip_address"] == "127.0.0.1"
    assert s["mfa_verified"] is True
    assert s["client_ip"] == "127.0.0.1"


async def test_disconnect_ends_session_and_frees_workspace(api, token):
    t = token()
    sid = (await api.launch("ws-linux-desktop", t)).body["session_id"]
    r = await api.post(f"/api/sessions/{sid}/disconnect", t)
    assert (r.status, r.body) == (200, {"message": "Session disconnected"})
    s = (await api.get(f"/api/sessions/{sid}", t)).body
    assert s["status"] == "disconnected"
    assert s["end_reason"] == "user_disconnect"
    assert parse(s["ended_at"]) >= parse(s["started_at"])
    ws = (await api.get("/api/workspaces/ws-linux-desktop", t)).body
    assert ws["status"] == "available"
    assert (await api.get("/api/sessions/active", t)).body == []
    audit = (await api.get("/api/audit", t, params={"session": sid})).body
    assert [e["action"] for e in audit] == ["disconnect_session", "launch_workspace"]
    assert audit[0]["user_id"] == "alice" and audit[0]["client_ip"] == "127.0.0.1"


async def test_disconnect_twice_is_conflict(api, token):
    t = token()
    sid = (await api.launch("ws-linux-desktop", t)).body["session_id"]
    assert (await api.post(f"/api/sessions/{sid}/disconnect", t)).status == 200
    r = await api.post(f"/api/sessions/{sid}/disconnect", t)
    assert r.status == 409 and r.body["detail"]


async def test_viewer_token_disconnects_its_own_session_only(api, token):
    t = token()
    a = (await api.launch("ws-linux-desktop", t)).body
    b = (await api.launch("ws-windows", t)).body
    r = await api.post(f"/api/sessions/{b['session_id']}/disconnect", a["viewer_token"])
    assert (r.status, r.body["detail"]) == (404, "Session not found")
    r = await api.post(f"/api/sessions/{a['session_id']}/disconnect", a["viewer_token"])
    assert r.status == 200
    # Dead the moment its session ended.
    r = await api.post(f"/api/sessions/{a['session_id']}/disconnect", a["viewer_token"])
    assert r.status == 401
    # A viewer token is no API credential.
    assert (await api.get("/api/sessions", b["viewer_token"])).status == 401


async def test_relaunch_returns_same_session_with_200(api, token):
    t = token()
    first = await api.launch("ws-linux-desktop", t)
    again = await api.launch("ws-linux-desktop", t)
    assert (first.status, again.status) == (201, 200)
    assert again.body["session_id"] == first.body["session_id"]
    assert again.body["viewer_token"] != first.body["viewer_token"]
    # The relaunch's token replaced the first one (a session holds one viewer
    # token, so relaunches never pile up rows): the first link proves nothing.
    sid = first.body["session_id"]
    r = await api.post(f"/api/sessions/{sid}/disconnect", first.body["viewer_token"])
    assert r.status == 401
    r = await api.post(f"/api/sessions/{sid}/disconnect", again.body["viewer_token"])
    assert r.status == 200


async def test_other_user_gets_409_while_in_use(api, token):
    assert (await api.launch("ws-linux-desktop", token("alice"))).status == 201
    r = await api.launch("ws-linux-desktop", token("bob"))
    assert r.status == 409 and "in use" in r.body["detail"]
    assert (await api.get("/api/sessions", token("bob"))).body == []


async def test_stop_terminates_and_owner_or_admin_only(api, token):
    alice, bob, admin = token("alice"), token("bob"), token("root", roles=["admin"])
    sid = (await api.launch("ws-windows", alice)).body["session_id"]
    r = await api.post("/api/workspaces/ws-windows/stop", bob)
    assert r.status == 403
    assert (await api.get(f"/api/sessions/{sid}", alice)).body["status"] == "active"
    r = await api.post("/api/workspaces/ws-windows/stop", alice)
    assert r.status == 200 and r.body["session"]["status"] == "terminated"
    assert r.body["session"]["end_reason"] == "workspace_stop"
    assert (await api.post("/api/workspaces/ws-windows/stop", alice)).status == 409
    sid2 = (await api.launch("ws-windows", alice)).body["session_id"]
    r = await api.post("/api/workspaces/ws-windows/stop", admin)
    assert r.status == 200 and r.body["session"]["id"] == sid2
    entries = (await api.get("/api/admin/audit", admin, params={"action": "stop_workspace"})).body
    assert [(e["session_id"], e["user_id"]) for e in entries] == [(sid2, "root"), (sid, "alice")]


async def test_sessions_newest_first_with_limit_and_before(api, token):
    t = token()
    ids = []
    for _ in range(5):
        sid = (await api.launch("ws-linux-desktop", t)).body["session_id"]
        await api.post(f"/api/sessions/{sid}/disconnect", t)
        ids.append(sid)
    newest_first = list(reversed(ids))
    assert [s["id"] for s in (await api.get("/api/sessions", t)).body] == newest_first
    page = (await api.get("/api/sessions", t, params={"limit": "2"})).body
    assert [s["id"] for s in page] == newest_first[:2]
    page2 = (
        await api.get("/api/sessions", t, params={"limit": "2", "before": page[-1]["id"]})
    ).body
    assert [s["id"] for s in page2] == newest_first[2:4]
    for bad in ("0", "1001", "x"):
        r = await api.get("/api/sessions", t, params={"limit": bad})
        assert r.status == 422 and "limit" in r.body["detail"]


async def test_admin_views_and_terminate(api, token):
    alice, admin = token("alice"), token("root", roles=["admin"])
    sid = (await api.launch("ws-linux-desktop", alice)).body["session_id"]
    await api.launch("ws-windows", token("bob"))
    assert (await api.get("/api/admin/sessions", alice)).status == 403
    all_active = (await api.get("/api/admin/sessions", admin, params={"status": "active"})).body
    assert {s["user_id"] for s in all_active} == {"alice", "bob"}
    mine = (await api.get("/api/admin/sessions", admin, params={"user": "alice"})).body
    assert [s["id"] for s in mine] == [sid]
    by_ws = (await api.get("/api/admin/sessions", admin, params={"workspace": "ws-windows"})).body
    assert [s["user_id"] for s in by_ws] == ["bob"]
    r = await api.post(f"/api/admin/sessions/{sid}/terminate", admin)
    assert r.status == 200 and r.body["session"]["status"] == "terminated"
    assert r.body["session"]["end_reason"] == "admin_terminate"
    assert (await api.post(f"/api/admin/sessions/{sid}/terminate", admin)).status == 409
    ends = (await api.get("/api/admin/audit", admin, params={"action": "end_session"})).body
    assert [(e["session_id"], e["details"]["reason"]) for e in ends] == [(sid, "admin_terminate")]
    assert (await api.get("/api/admin/audit", alice)).status == 403


async def test_audit_time_range_and_own_entries_only(api, token):
    alice, bob = token("alice"), token("bob")
    await api.launch("ws-linux-desktop", alice)
    await api.launch("ws-windows", bob)
    mine = (await api.get("/api/audit", alice)).body
    assert {e["user_id"] for e in mine} == {"alice"}
    future = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert (await api.get("/api/audit", alice, params={"since": future})).body == []
    r = await api.get("/api/audit", alice, params={"since": "yesterday"})
    assert r.status == 422


async def test_workspaces_list_and_one(api, token):
    t = token()
    r = await api.get("/api/workspaces", t)
    assert [w["id"] for w in r.body] == ["ws-linux-desktop", "ws-windows", "ws-wiki"]
    assert all(
        list(w) == ["id", "name", "type", "status", "description", "protocol"] for w in r.body
    )
    assert (await api.get("/api/workspaces/ws-wiki", t)).body["type"] == "html5"
    assert (await api.get("/api/workspaces/nope", t)).status == 404


async def test_openapi_is_public_and_describes_every_route(client, api):
    r = await api.get("/api/openapi.json")
    assert r.status == 200 and r.body["openapi"].startswith("3.1")
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/")
        and route.method != "HEAD"
    }
    documented = {(m, p) for p, ops in r.body["paths"].items() for m in ops}
    assert routes == documented


async def test_openapi_keeps_end_reasons_nothing_produces_as_reserved(api):
    doc = (await api.get("/api/openapi.json")).body
    end_reason = doc["components"]["schemas"]["Session"]["properties"]["end_reason"]
    # Stored rows and clients may carry them, so they stay in the enum.
    assert {"tunnel_lost", "system"} <= set(end_reason["enum"])
    assert "`tunnel_lost` and `system` are reserved" in end_reason["description"]
