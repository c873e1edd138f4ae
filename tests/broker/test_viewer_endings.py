"""How a viewer's connection ends, as guacd 1.5.5 shows it (the simulated guacd
behaves like it): guacd is told when the viewer leaves, whatever ended the
viewer, and a workspace guacd cannot reach is an error naming its address, not
a normal end."""

from __future__ import annotations

import asyncio
import re

import pytest

from broker.core.audit import Actor
from broker.core.models import EndReason
from broker.web.http import BROKER
from protocols.simulated.guacd import Failure
from tests.broker.apiclient import Api
from tests.broker.viewer_support import WORKSPACES, finish, launch, open_tunnel, read_until

pytestmark = pytest.mark.db

UNREACHABLE = re.compile(r"The remote desktop at 127\.0\.0\.1:\d+ could not be reached")


@pytest.fixture
async def api(broker_for, guacd) -> Api:
    result: Api = await broker_for(guacd.port)
    return result


@pytest.mark.parametrize("how", ["closed tab", "disconnect", "stop", "idle_timeout"])
async def test_guacd_is_told_the_viewer_left(api, guacd, token, how):
    """Without ``disconnect`` guacd 1.5.5 keeps the connection to the
    workspace (and an RDP session's licence) about 15 s."""
    t = token()
    launched = await launch(api, t)
    sid = launched["session_id"]
    ws = await open_tunnel(api, sid, launched["viewer_token"])
    await read_until(ws, lambda f: "4.sync," in f)
    if how == "closed tab":
        await ws.close()
    elif how == "disconnect":
        assert (await api.post(f"/api/sessions/{sid}/disconnect", t)).status == 200
    elif how == "stop":
        assert (await api.post("/api/workspaces/ws-vnc/stop", t)).status == 200
    else:
        sessions = api.client.app[BROKER].sessions
        assert await sessions.end(sid, EndReason(how), Actor.system()) is not None
    await guacd.wait_for(lambda: guacd.disconnects == 1, timeout=10)
    await guacd.wait_for(lambda: guacd.active == 0, timeout=10)


@pytest.mark.parametrize("workspace", ["ws-vnc", "ws-ssh"])
async def test_an_unreachable_workspace_is_an_error_naming_it(api, guacd, token, workspace):
    """guacd answers ``ready``, draws (SSH) and says only ``disconnect``, once
    the client writes: the broker nudges it, and the viewer gets the broker's
    error, 519, never the ``disconnect`` that reads as "You disconnected"."""
    guacd.inject(Failure.UNREACHABLE)
    launched = await launch(api, token(), workspace)
    ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
    frames, code, reason = await finish(ws)  # nothing sent: the broker nudges guacd
    assert not any("10.disconnect;" in f for f in frames)
    assert frames[-1].startswith("5.error,") and UNREACHABLE.search(frames[-1])
    assert frames[-1].endswith("3.519;")
    assert (code, reason) == (1011, "519")
    assert guacd.failures_applied[-1] is Failure.UNREACHABLE


async def test_an_unreachable_rdp_workspace_shows_the_error_before_the_close(api, guacd, token):
    guacd.inject(Failure.UNREACHABLE)
    launched = await launch(api, token(), "ws-rdp")
    ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
    frames, code, reason = await finish(ws)
    errors = [f for f in frames if "5.error," in f]
    assert len(errors) == 1 and errors[0].endswith("3.519;")
    # The broker's words naming the address, whatever guacd said (it cannot
    # tell an unreachable server from a refused login): the same every run.
    assert UNREACHABLE.search(errors[0]), errors[0]
    assert frames[-1] == errors[0]  # nothing after it, no disconnect
    assert (code, reason) == (1011, "519")


@pytest.mark.parametrize("failure", ["disconnect", "refused"])
async def test_a_server_that_answers_but_refuses_is_a_refused_login(
    start_broker, make_settings, guacd, token, failure
):
    """guacd 1.5.5 says the same when a VNC server refuses the password as when
    nothing listens (``disconnect``), and for RDP "Server refused connection"
    for both: the broker tries the address itself, and a server that accepts
    a connection refused the login. The viewer shows "The remote desktop
    refused the username or password" (769 once the relay runs), not "could
    not be reached"."""
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    workspaces = (
        WORKSPACES
        + f"""
[[workspaces]]
id = "ws-listening"
name = "A server that answers"
type = "{"vnc" if failure == "disconnect" else "rdp"}"
port = {port}
"""
    )
    settings = make_settings(
        workspaces=workspaces, env={"BROKER_GUACD_ENDPOINTS": f"127.0.0.1:{guacd.port}"}
    )
    api = Api(await start_broker(settings))
    guacd.inject(Failure.UNREACHABLE)
    try:
        launched = await launch(api, token(), "ws-listening")
        ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
        frames, code, reason = await finish(ws)
    finally:
        server.close()
    errors = [f for f in frames if "5.error," in f]
    assert len(errors) == 1 and errors[0].endswith("3.769;"), frames
    assert f"The remote desktop at 127.0.0.1:{port} answered but refused the login" in errors[0]
    assert (code, reason) == (1008, "769")
    assert not any("10.disconnect;" in f for f in frames)
    session = (await api.get(f"/api/sessions/{launched['session_id']}", token())).body
    assert "refused the login" in session["last_connect_error"]


async def test_a_session_ended_during_the_guacd_handshake_ends_its_viewer(
    broker_for, start_guacd, token
):
    """The credential and the session are checked before guacd is asked; a
    session that ends while guacd hand-shakes still ends the viewer that was
    on its way, with the end's status, and guacd is told."""
    guacd = await start_guacd(first_frame_delay=0.05, slow_handshake_delay=1.0)
    api = await broker_for(guacd.port)
    t = token()
    launched = await launch(api, t)
    sid = launched["session_id"]
    guacd.inject(Failure.SLOW_HANDSHAKE)
    opening = asyncio.create_task(open_tunnel(api, sid, launched["viewer_token"]))
    await guacd.wait_for(lambda: len(guacd.handshakes) == 1, timeout=10)
    # guacd holds `ready` back; the user ends the session meanwhile.
    assert (await api.post(f"/api/sessions/{sid}/disconnect", t)).status == 200

    frames, code, reason = await finish(await opening)

    assert (code, reason) == (1000, "0")
    assert not any("4.sync," in f for f in frames)
    await guacd.wait_for(lambda: guacd.active == 0, timeout=10)
