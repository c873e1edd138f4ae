from __future__ import annotations

import re

import pytest

from tests.conftest import auth
from tests.scrape import value

pytestmark = pytest.mark.db


async def test_healthz_and_readyz(client):
    r = await client.get("/healthz")
    assert r.status == 200 and (await r.json()) == {"status": "ok"}
    r = await client.get("/readyz")
    body = await r.json()
    assert r.status == 200 and body["status"] == "ready"
    assert body["checks"]["database"]["ok"] is True


async def test_metrics_count_sessions_launches_and_latency(client, token):
    t = token()
    await client.post("/api/workspaces/ws-linux-desktop/launch", headers=auth(t))
    await client.post("/api/workspaces/ws-windows/launch", headers=auth(t))
    await client.post("/api/workspaces/ws-windows/stop", headers=auth(t))
    r = await client.get("/metrics")
    text = await r.text()
    assert r.status == 200 and r.content_type == "text/plain"
    assert value(text, "broker_sessions", status="active") == 1
    ended = value(text, "broker_sessions_ended_total", reason="workspace_stop", status="terminated")
    assert ended == 1
    assert value(text, "broker_launches_total", outcome="created") == 2
    assert "broker_http_request_duration_seconds_bucket{" in text
    assert 'route="/api/workspaces/{workspace_id}/launch"' in text


ENDED = re.compile(r'broker_sessions_ended_total\{reason="(\w+)",status="\w+"\} (\S+)')


def ended_totals(text: str) -> dict[str, float]:
    """``broker_sessions_ended_total`` by reason, from a scrape."""
    found = {}
    for line in text.splitlines():
        match = ENDED.fullmatch(line)
        if match:
            found[match[1]] = float(match[2])
    return found


async def test_ended_totals_are_the_databases_and_every_replica_reports_them(
    start_broker, settings, token
):
    a = await start_broker(settings)
    alice, bob = token("alice"), token("bob", roles=["admin"])
    launched = await a.post("/api/workspaces/ws-linux-desktop/launch", headers=auth(alice))
    session_id = (await launched.json())["session_id"]
    await a.post(f"/api/sessions/{session_id}/disconnect", headers=auth(alice))
    # Ending it again changes nothing, so counts nothing.
    again = await a.post(f"/api/sessions/{session_id}/disconnect", headers=auth(alice))
    assert again.status == 409
    for _ in range(2):
        await a.post("/api/workspaces/ws-windows/launch", headers=auth(alice))
        await a.post("/api/workspaces/ws-windows/stop", headers=auth(alice))
    launched = await a.post("/api/workspaces/ws-wiki/launch", headers=auth(alice))
    session_id = (await launched.json())["session_id"]
    r = await a.post(f"/api/admin/sessions/{session_id}/terminate", headers=auth(bob))
    assert r.status == 200

    expected = {"user_disconnect": 1, "workspace_stop": 2, "admin_terminate": 1}
    totals = ended_totals(await (await a.get("/metrics")).text())
    assert {k: v for k, v in totals.items() if v} == expected
    assert totals["idle_timeout"] == 0  # every reason is shown, from 0
    # Another replica on the same database (or this one restarted) says the same.
    b = await start_broker(settings)
    text = await (await b.get("/metrics")).text()
    assert {k: v for k, v in ended_totals(text).items() if v} == expected
    assert value(text, "broker_sessions", status="active") == 0
    assert 'broker_sessions{status="terminated"}' not in text


async def test_cors_only_for_configured_origins(start_broker, make_settings, token):
    settings = make_settings(env={"BROKER_SERVER_CORS_ORIGINS": "https://portal.example"})
    client = await start_broker(settings)
    preflight = {"Access-Control-Request-Method": "GET"}
    r = await client.options(
        "/api/sessions", headers={"Origin": "https://portal.example", **preflight}
    )
    assert r.status == 204
    assert r.headers["Access-Control-Allow-Origin"] == "https://portal.example"
    assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
    r = await client.get(
        "/api/sessions", headers={"Origin": "https://portal.example", **auth(token())}
    )
    assert r.headers["Access-Control-Allow-Origin"] == "https://portal.example"
    r = await client.get(
        "/api/sessions", headers={"Origin": "https://evil.example", **auth(token())}
    )
    assert "Access-Control-Allow-Origin" not in r.headers


async def test_no_cors_by_default(client, token):
    r = await client.get(
        "/api/sessions", headers={"Origin": "https://portal.example", **auth(token())}
    )
    assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers
