from __future__ import annotations

import pytest

from tests.conftest import auth

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
    assert 'broker_sessions{status="active"} 1' in text
    assert 'broker_sessions{status="terminated"} 1' in text
    assert 'broker_launches_total{outcome="created"} 2' in text
    assert 'broker_session_ends_total{reason="workspace_stop"} 1' in text
    assert "broker_http_request_duration_seconds_bucket{" in text
    assert 'route="/api/workspaces/{workspace_id}/launch"' in text


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
