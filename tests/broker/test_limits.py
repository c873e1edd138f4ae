"""Session limits, enforced server-side: maximum duration, idle without a viewer,
idle without input, and concurrent sessions per user."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from broker.config import LimitSettings
from broker.core.models import EndReason
from broker.core.reaper import due_reason, reap_once
from broker.web.http import BROKER
from tests.broker.apiclient import Api
from tests.broker.viewer_support import WORKSPACES, finish, open_tunnel, read_until

pytestmark = pytest.mark.db

T0 = datetime(2026, 3, 5, 14, 30, tzinfo=UTC)
LIMITS = LimitSettings(
    max_session_seconds=3600, idle_no_viewer_seconds=600, idle_no_input_seconds=1800
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("overrides", "now", "last_input", "last_viewer", "expected"),
    [
        ((0, 0, 0), 100, 90, 95, None),
        ((0, 0, 0), 3600, 3599, 3599, EndReason.MAX_DURATION),
        ((0, 0, 0), 700, 650, 99, EndReason.IDLE_TIMEOUT),  # no viewer for 601 s
        ((0, 0, 0), 1900, 99, 1899, EndReason.IDLE_TIMEOUT),  # no input for 1801 s
        ((7200, 0, 0), 3600, 3599, 3599, None),  # the workspace allows longer
        ((-1, -1, -1), 99999, 0, 0, None),  # the workspace turns every limit off
        ((60, 0, 0), 61, 60, 60, EndReason.MAX_DURATION),  # ... or makes one stricter
    ],
)
def test_due_reason(overrides, now, last_input, last_viewer, expected):
    found = due_reason(LIMITS, overrides, at(now), T0, at(last_input), at(last_viewer))
    assert (found[0] if found else None) == expected


def test_global_zero_disables():
    none = LimitSettings(max_session_seconds=0, idle_no_viewer_seconds=0, idle_no_input_seconds=0)
    assert due_reason(none, (0, 0, 0), at(10**7), T0, T0, T0) is None


@pytest.fixture
async def api(start_broker, make_settings, guacd) -> Api:
    settings = make_settings(
        "\n[limits]\nmax_sessions_per_user = 2\nreaper_interval_seconds = 3600\n",
        workspaces=WORKSPACES,
        env={"BROKER_GUACD_ENDPOINTS": f"127.0.0.1:{guacd.port}"},
    )
    return Api(await start_broker(settings))


async def test_concurrent_sessions_per_user_limit_is_429(api, token):
    t = token()
    first = await api.launch("ws-vnc", t)
    await api.launch("ws-rdp", t)
    r = await api.launch("ws-ssh", t)
    assert r.status == 429 and "2 active sessions" in r.body["detail"]
    assert r.body["code"] == "too_many_sessions"
    # Relaunching a running one is not a new session.
    assert (await api.launch("ws-vnc", t)).status == 200
    # Another user is not affected.
    assert (await api.launch("ws-ssh", token("bob"))).status == 201
    await api.post(f"/api/sessions/{first.body['session_id']}/disconnect", t)
    assert (await api.launch("ws-badpw", t)).status == 201


async def test_reaper_ends_due_sessions_closes_streams_and_audits(api, token):
    broker = api.client.app[BROKER]
    t = token()
    watched = await api.launch("ws-vnc", t)
    unwatched = await api.launch("ws-rdp", t)
    ws = await open_tunnel(api, watched.body["session_id"], watched.body["viewer_token"])
    await read_until(ws, lambda f: "4.sync," in f)
    now = datetime.now(UTC)
    # 16 minutes on: the unwatched session is idle (no viewer), the watched one is not.
    ended = await reap_once(
        broker.sessions, broker.settings, broker.streams, now + timedelta(minutes=16)
    )
    assert [(d.session_id, d.reason) for d in ended] == [
        (unwatched.body["session_id"], EndReason.IDLE_TIMEOUT)
    ]
    s = (await api.get(f"/api/sessions/{unwatched.body['session_id']}", t)).body
    assert (s["status"], s["end_reason"]) == ("disconnected", "idle_timeout")
    # Eight hours on: the watched one reached the maximum duration, its viewer is told.
    ended = await reap_once(
        broker.sessions, broker.settings, broker.streams, now + timedelta(hours=8)
    )
    assert [d.reason for d in ended] == [EndReason.MAX_DURATION]
    frames, code, reason = await finish(ws)
    assert (code, reason) == (1002, "522")
    assert "maximum duration" in frames[-1]
    admin = token("root", roles=["admin"])
    entries = (await api.get("/api/admin/audit", admin, params={"action": "end_session"})).body
    assert sorted(e["details"]["reason"] for e in entries) == ["idle_timeout", "max_duration"]
    assert all(e["user_id"] is None for e in entries)  # the system, not a user
    # A second replica's pass finds nothing left to do.
    again = await reap_once(
        broker.sessions, broker.settings, broker.streams, now + timedelta(hours=9)
    )
    assert again == []


async def test_no_session_outlives_its_deadline_by_more_than_the_interval(
    start_broker, make_settings, guacd, token
):
    settings = make_settings(
        "\n[limits]\nmax_session_seconds = 1\nreaper_interval_seconds = 0.2\n",
        workspaces=WORKSPACES,
        env={"BROKER_GUACD_ENDPOINTS": f"127.0.0.1:{guacd.port}"},
    )
    api = Api(await start_broker(settings))
    t = token()
    launched = (await api.launch("ws-vnc", t)).body
    ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
    _, code, reason = await finish(ws, limit=20)
    assert (code, reason) == (1002, "522")
    s = (await api.get(f"/api/sessions/{launched['session_id']}", t)).body
    started = datetime.fromisoformat(s["started_at"].replace("Z", "+00:00"))
    ended = datetime.fromisoformat(s["ended_at"].replace("Z", "+00:00"))
    # Deadline 1 s, reaper every 0.2 s; generous slack for two busy cores.
    assert 1.0 <= (ended - started).total_seconds() < 1.0 + 0.2 + 3.0


async def test_input_keeps_a_session_from_idling(start_broker, make_settings, guacd, token):
    settings = make_settings(
        "\n[limits]\nreaper_interval_seconds = 3600\nactivity_write_seconds = 0\n",
        workspaces=WORKSPACES,
        env={"BROKER_GUACD_ENDPOINTS": f"127.0.0.1:{guacd.port}"},
    )
    api = Api(await start_broker(settings))
    broker = api.client.app[BROKER]
    launched = (await api.launch("ws-vnc", token())).body
    ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
    await read_until(ws, lambda f: "4.sync," in f)
    before = {sid: last_input for sid, _, _, last_input, _ in await broker.queries.active_timings()}
    await ws.send_str("3.key,5.65307,1.1;")
    await guacd.wait_for(lambda: any(i.opcode == "key" for i in guacd.received), timeout=10)
    # The relay noted the input before passing the key on; its write is in flight.
    await broker.sessions.background_written()
    after = {sid: li for sid, _, _, li, _ in await broker.queries.active_timings()}
    assert after[launched["session_id"]] > before[launched["session_id"]]
    await ws.close()


async def test_each_workspace_is_reaped_by_its_own_limits(start_broker, make_settings, token):
    """The reaper asks the database only for sessions past a deadline, per
    group of workspaces sharing limits: a stricter workspace, one with every
    limit off, one on the defaults, and one no longer configured (defaults)."""
    settings = make_settings(
        "\n[limits]\nreaper_interval_seconds = 3600\nmax_session_seconds = 3600\n"
        "idle_no_viewer_seconds = 600\nidle_no_input_seconds = 1800\n",
        workspaces="""
[[workspaces]]
id = "strict"
name = "Strict"
type = "linux"
max_session_seconds = 60

[[workspaces]]
id = "unlimited"
name = "Unlimited"
type = "linux"
max_session_seconds = -1
idle_no_viewer_seconds = -1
idle_no_input_seconds = -1

[[workspaces]]
id = "plain"
name = "Plain"
type = "linux"

[[workspaces]]
id = "removed"
name = "Removed later"
type = "linux"
""",
    )
    api = Api(await start_broker(settings))
    broker = api.client.app[BROKER]
    ids = {}
    for n, ws in enumerate(["strict", "unlimited", "plain", "removed"]):
        ids[(await api.launch(ws, token(f"user-{n}"))).body["session_id"]] = ws
    # The "removed" workspace leaves the configuration: its session keeps the defaults.
    kept = replace(broker.settings, workspaces=broker.settings.workspaces[:3])
    now = datetime.now(UTC)

    async def reaped(later: timedelta) -> dict[str, EndReason]:
        done = await reap_once(broker.sessions, kept, broker.streams, now + later)
        return {ids[d.session_id]: d.reason for d in done}

    assert await reaped(timedelta(seconds=30)) == {}
    assert await reaped(timedelta(seconds=61)) == {"strict": EndReason.MAX_DURATION}
    assert await reaped(timedelta(minutes=9)) == {}
    assert await reaped(timedelta(minutes=11)) == {
        "plain": EndReason.IDLE_TIMEOUT,
        "removed": EndReason.IDLE_TIMEOUT,
    }
    assert await reaped(timedelta(days=400)) == {}
    active = (await api.get("/api/sessions/active", token("user-1"))).body
    assert [s["workspace_id"] for s in active] == ["unlimited"]
