"""Failed connections do not hold a workspace: a viewer's failed try is kept on
the session (``last_connect_error``, shown in the API), and a guacd session
whose viewers tried and none reached a first ``sync`` for
``limits.connect_failed_seconds`` (from the first failed try) ends
``connect_failed``, freeing the workspace. A success clears the clock;
sessions nobody tried to view, and HTML5 ones, keep the idle limits."""

from __future__ import annotations

from datetime import timedelta

import pytest

from broker.core.audit import Action
from broker.core.models import EndReason, SessionStatus
from broker.core.reaper import reap_once
from broker.core.streams import OpenStreams, ending_for
from broker.web.http import BROKER
from protocols.simulated.guacd import Failure
from protocols.status import GuacamoleStatus as S
from tests.broker.apiclient import Api
from tests.broker.machine import StartMachine
from tests.broker.viewer_support import WORKSPACES, finish, launch, open_tunnel, read_until
from tunnels.direct import DirectProvider

pytestmark = pytest.mark.db


# -- the state machine on the database ------------------------------------------


async def test_failed_tries_end_a_guacd_session_counted_from_the_first(
    start_machine: StartMachine,
):
    machine = await start_machine(DirectProvider())
    desktop = (await machine.launch("ws-linux")).session
    wiki = (await machine.launch("ws-wiki")).session
    untried = (await machine.launch("ws-rdp")).session
    await machine.sessions.connect_failed(desktop.id, "guacd unavailable (status 520)")
    first = (await machine.row(desktop.id)).connect_failing_since
    assert first is not None
    await machine.sessions.connect_failed(desktop.id, "refused (status 519)")
    row = await machine.row(desktop.id)
    # The last error is kept; the clock runs from the first failed try.
    assert (row.last_connect_error, row.connect_failing_since) == ("refused (status 519)", first)
    # An HTML5 session is never ended for this, whatever was recorded.
    await machine.sessions.connect_failed(wiki.id, "something")
    streams = OpenStreams()

    assert (
        await reap_once(machine.sessions, machine.settings, streams, first + timedelta(seconds=179))
        == []
    )
    ended = await reap_once(
        machine.sessions, machine.settings, streams, first + timedelta(seconds=180)
    )

    assert [(d.session_id, d.reason) for d in ended] == [(desktop.id, EndReason.CONNECT_FAILED)]
    row = await machine.row(desktop.id)
    assert (row.status, row.end_reason) == (SessionStatus.TERMINATED, "connect_failed")
    assert row.last_connect_error == "refused (status 519)"  # kept for the record
    assert (await machine.row(untried.id)).status == SessionStatus.ACTIVE
    assert (await machine.row(wiki.id)).status == SessionStatus.ACTIVE
    (entry,) = await machine.audit(session_id=desktop.id, action=Action.END_SESSION)
    assert entry.details["reason"] == "connect_failed" and entry.user_id is None
    # The workspace is free again.
    assert (await machine.launch("ws-linux")).created


async def test_a_first_sync_clears_the_failure(start_machine: StartMachine):
    machine = await start_machine(DirectProvider())
    session = (await machine.launch("ws-linux")).session
    await machine.sessions.connect_failed(session.id, "refused (status 519)")
    first = (await machine.row(session.id)).connect_failing_since
    assert first is not None

    machine.sessions.note_connected(session.id)
    await machine.sessions.background_written()

    row = await machine.row(session.id)
    assert (row.last_connect_error, row.connect_failing_since) == (None, None)
    later = first + timedelta(seconds=600)
    assert await reap_once(machine.sessions, machine.settings, OpenStreams(), later) == []


def test_viewers_of_a_session_ended_connect_failed_are_told_why():
    ending = ending_for("connect_failed")
    assert ending.status == S.SESSION_CLOSED
    assert ending.message is not None and "could not be reached" in ending.message


# -- through the viewer tunnel ----------------------------------------------------


@pytest.fixture
async def api(start_broker, make_settings, guacd, monkeypatch) -> Api:
    monkeypatch.setenv("TEST_WS_PASSWORD", "s3cret-Pa55word")
    settings = make_settings(
        "\n[limits]\nreaper_interval_seconds = 3600\nconnect_failed_seconds = 120\n",
        workspaces=WORKSPACES,
        env={"BROKER_GUACD_ENDPOINTS": f"127.0.0.1:{guacd.port}"},
    )
    return Api(await start_broker(settings))


async def test_a_refused_connection_shows_its_error_and_frees_the_workspace(api, token):
    broker = api.client.app[BROKER]
    t = token()
    failing = await launch(api, t, "ws-badpw")  # guacd: ready, then error 519
    idle = await launch(api, t, "ws-vnc")  # nobody tries to view it
    ws = await open_tunnel(api, failing["session_id"], failing["viewer_token"])
    _, code, reason = await finish(ws)
    assert (code, reason) == (1011, "519")

    shown = (await api.get(f"/api/sessions/{failing['session_id']}", t)).body
    assert shown["status"] == "active"
    assert "519" in shown["last_connect_error"]
    assert (await api.get(f"/api/sessions/{idle['session_id']}", t)).body[
        "last_connect_error"
    ] is None
    row = await broker.queries.get(failing["session_id"])
    assert row is not None and row.connect_failing_since is not None

    ended = await reap_once(
        broker.sessions,
        broker.settings,
        broker.streams,
        row.connect_failing_since + timedelta(seconds=120),
    )

    assert [d.session_id for d in ended] == [failing["session_id"]]
    shown = (await api.get(f"/api/sessions/{failing['session_id']}", t)).body
    assert (shown["status"], shown["end_reason"]) == ("terminated", "connect_failed")
    workspaces = {w["id"]: w["status"] for w in (await api.get("/api/workspaces", t)).body}
    assert (workspaces["ws-badpw"], workspaces["ws-vnc"]) == ("available", "in_use")
    admin = token("root", roles=["admin"])
    listed = (await api.get("/api/admin/sessions", admin, params={"status": "terminated"})).body
    assert [s["last_connect_error"] for s in listed] == [shown["last_connect_error"]]


async def test_a_viewer_reaching_the_desktop_clears_the_error(api, token, guacd):
    broker = api.client.app[BROKER]
    t = token()
    launched = await launch(api, t, "ws-vnc")
    sid, credential = launched["session_id"], launched["viewer_token"]
    guacd.inject(Failure.EOF_AFTER_READY)
    _, code, _ = await finish(await open_tunnel(api, sid, credential))
    assert code == 1002  # the remote desktop closed (518)
    assert (await api.get(f"/api/sessions/{sid}", t)).body["last_connect_error"]

    ws = await open_tunnel(api, sid, credential)
    await read_until(ws, lambda f: "4.sync," in f)
    await broker.sessions.background_written()

    assert (await api.get(f"/api/sessions/{sid}", t)).body["last_connect_error"] is None
    ended = await reap_once(broker.sessions, broker.settings, broker.streams)
    assert ended == []
    await ws.close()
