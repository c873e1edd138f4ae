"""Two replicas on one database: any replica serves any call, and a session
ended on one closes the viewer stream held by the other (at once over
PostgreSQL LISTEN/NOTIFY; by the reaper's sweep on a shared SQLite file)."""

from __future__ import annotations

import asyncio

import pytest

from broker.web.http import BROKER
from tests.broker.apiclient import Api
from tests.broker.viewer_support import WORKSPACES, finish, launch, open_tunnel, read_until

pytestmark = pytest.mark.db


async def test_end_on_one_replica_closes_the_stream_on_the_other(
    start_broker, make_settings, guacd, token, database_url
):
    postgres = database_url.startswith("postgresql")
    # On PostgreSQL the sweep is kept out of the way, so only the event can close it.
    sweep = 3600 if postgres else 0.2
    settings = make_settings(
        f"\n[limits]\nreaper_interval_seconds = {sweep}\n",
        workspaces=WORKSPACES,
        env={"BROKER_GUACD_ENDPOINTS": f"127.0.0.1:{guacd.port}"},
    )
    a = Api(await start_broker(settings))
    b = Api(await start_broker(settings))
    if postgres:
        for api in (a, b):
            events = api.client.app[BROKER].events
            await asyncio.wait_for(events.listening.wait(), 10)
    t = token()
    launched = await launch(a, t)
    ws = await open_tunnel(a, launched["session_id"], launched["viewer_token"])
    await read_until(ws, lambda f: "4.sync," in f)
    # Replica B sees the session and ends it.
    assert (await b.get(f"/api/sessions/{launched['session_id']}", t)).body["status"] == "active"
    assert (await b.post("/api/workspaces/ws-vnc/stop", t)).status == 200
    _, code, reason = await finish(ws, limit=10)
    assert (code, reason) == (1002, "523")
