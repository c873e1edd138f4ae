"""Fix 1 of issue 12: when the viewer leaves (closes its tab, or the user
disconnects through the API), guacd is told ``disconnect`` and drops its
connection to the workspace server at once. Before the fix guacd kept it
about 15 s ("User is not responding"), holding e.g. an RDP session.

Measured here (guacd 1.5.5, x11vnc, FreeRDP's shadow server, OpenSSH), the
relay's ``disconnect`` removed: VNC 15.1-15.5 s, SSH 0.1 s (guacd's SSH
plugin closes at once, so only the VNC and RDP cases catch a regression).
With it: about 1 s or less."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.integration.conftest import workspace
from tests.integration.support import eventually, launch_viewer

pytestmark = pytest.mark.real_guacd

GONE_WITHIN = 3.0


def server_peers(port: int) -> set[str]:
    """The peer addresses of the established TCP connections to the server
    listening on loopback ``port`` (guacd's connections to it)."""
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        timeout=5,
        check=True,
    ).stdout
    # -H: no header; columns Recv-Q Send-Q Local Peer
    return {line.split()[3] for line in out.splitlines() if line.strip()}


@pytest.mark.parametrize("how", ["close", "api"])
@pytest.mark.parametrize("protocol", ["vnc", "rdp", "ssh"])
async def test_leaving_closes_guacds_connection_to_the_server(
    real_broker, request, password_file, token, protocol, how
):
    server = request.getfixturevalue(
        "rdp_tls_server" if protocol == "rdp" else f"{protocol}_server"
    )
    extra = {"security": "tls", "ignore_cert": True} if protocol == "rdp" else {}
    api = await real_broker(
        workspace("ws", protocol, server, password_file=password_file(server.password), **extra)
    )
    before = server_peers(server.port)
    t = token()
    viewer, session_id = await launch_viewer(api, t, "ws")
    try:
        await viewer.first_frame()
        ours = server_peers(server.port) - before
        assert ours, "guacd holds no connection to the server after the first frame"
        started = time.monotonic()
        if how == "close":
            # The tab goes away: the socket closes, nothing is said first.
            await viewer.ws.close()
        else:
            r = await api.post(f"/api/sessions/{session_id}/disconnect", t)
            assert r.status == 200, r.body
        await eventually(
            lambda: not (server_peers(server.port) & ours),
            f"guacd's connection to the {protocol} server closed",
            limit=GONE_WITHIN,
        )
        print(f"{protocol}/{how}: server connection gone after {time.monotonic() - started:.2f} s")
    finally:
        await viewer.close()
