"""The PostgreSQL event bus is watched: when a replica's LISTEN connection is
lost, it says so (a WARNING, a metric, ``/readyz`` details), reconnects at
once, and sweeps its streams as soon as it listens again, so a session ended
on another replica during the gap closes its viewer within seconds, not at
the next sweep."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from broker.core.pgevents import PgEventBus
from broker.web.http import BROKER
from tests.broker.apiclient import Api
from tests.broker.viewer_support import WORKSPACES, finish, launch, open_tunnel, read_until
from tests.scrape import value

pytestmark = pytest.mark.db

# Far beyond the test's bounds: only the sweep on resuming can close the stream in time.
SWEEP_SECONDS = 60
CLOSE_LIMIT = 15.0


async def until(check: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {limit:g} s: {what}")
        await asyncio.sleep(0.02)


async def metrics(api: Api) -> str:
    r = await api.client.get("/metrics")
    return await r.text()


async def test_a_lost_listener_is_reported_and_its_gap_swept_on_return(
    start_broker, make_settings, guacd, token, database_url, caplog
):
    if not database_url.startswith("postgresql"):
        pytest.skip("the event bus between replicas is PostgreSQL's LISTEN/NOTIFY")
    settings = make_settings(
        f"\n[limits]\nreaper_interval_seconds = {SWEEP_SECONDS}\n",
        workspaces=WORKSPACES,
        env={"BROKER_GUACD_ENDPOINTS": f"127.0.0.1:{guacd.port}"},
    )
    a = Api(await start_broker(settings))
    b = Api(await start_broker(settings))
    bus = b.client.app[BROKER].events
    assert isinstance(bus, PgEventBus)
    for api in (a, b):
        await asyncio.wait_for(api.client.app[BROKER].events.listening.wait(), 10)
    t, admin = token(), token("root", roles=["admin"])
    launched = await launch(a, t)
    ws = await open_tunnel(b, launched["session_id"], launched["viewer_token"])
    await read_until(ws, lambda f: "4.sync," in f)
    assert value(await metrics(b), "broker_event_bus_listening") == 1
    caplog.set_level(logging.INFO, logger="broker.core.pgevents")

    # From the maintenance database: a database cannot refuse its own connections.
    url = urlsplit(database_url.replace("+asyncpg", ""))
    database = url.path.lstrip("/")
    control = await asyncpg.connect(urlunsplit(url._replace(path="/postgres")))
    try:
        # The gap is held open: B cannot reconnect while the database refuses
        # new connections (the open ones, in each replica's pool, keep working).
        await control.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        killed = await control.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1",
            bus.application_name,
        )
        assert killed == 1
        await until(lambda: not bus.listening.is_set(), "B notices its listener is gone")

        text = await metrics(b)
        assert value(text, "broker_event_bus_listening") == 0
        assert value(text, "broker_event_bus_disconnects_total") == 1
        r = await b.get("/readyz", admin, validate=False)
        events = r.body["checks"]["replica_events"]
        assert r.status == 200 and r.body["status"] == "ready"
        assert events["ok"] is True and events["detail"].startswith("degraded since 20")
        r = await b.get("/readyz", validate=False)
        assert r.status == 200 and r.body["checks"]["replica_events"] == {"ok": True}

        # Ended on A while B hears nothing: A's notification is lost.
        assert (await a.post("/api/workspaces/ws-vnc/stop", t)).status == 200
    finally:
        await control.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await control.close()

    _, code, reason = await finish(ws, limit=CLOSE_LIMIT)
    assert (code, reason) == (1002, "523")
    assert bus.listening.is_set()

    lost = [r for r in caplog.records if "listening connection lost" in r.getMessage()]
    back = [r for r in caplog.records if "listening again" in r.getMessage()]
    assert [r.levelno for r in lost] == [logging.WARNING]  # once, however many retries failed
    assert [r.levelno for r in back] == [logging.INFO]
    text = await metrics(b)
    assert value(text, "broker_event_bus_listening") == 1
    assert value(text, "broker_event_bus_disconnects_total") == 1
    r = await b.get("/readyz", admin, validate=False)
    assert r.body["checks"]["replica_events"]["detail"].startswith("listening")
