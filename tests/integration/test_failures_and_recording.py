"""A wrong password ends in an error the user sees (never a normal end), and
a recorded workspace leaves a Guacamole recording on disk."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from protocols.instruction import Parser
from tests.integration.conftest import workspace
from tests.integration.support import eventually, launch_viewer

pytestmark = pytest.mark.real_guacd

WRONG = "wrong-pw"
REFUSED_LOGIN = "answered but refused the login"


async def ended_with_error(viewer, limit: float) -> str:
    """The Guacamole status the viewer was given: an ``error`` instruction's
    status, repeated as the close reason (never ``0``, a normal end)."""
    await asyncio.wait_for(viewer.closed.wait(), limit)
    errors = [i for i in viewer.received if i.opcode == "error"]
    assert errors, f"no error, only {viewer.tail()} (close {viewer.close_code})"
    status = errors[-1].args[1]
    assert status != "0" and viewer.close_reason == status, (errors, viewer.close_reason)
    return status


async def test_ssh_wrong_password_is_unauthorized(real_broker, ssh_server, password_file, token):
    api = await real_broker(
        workspace("ws-ssh", "ssh", ssh_server, password_file=password_file(WRONG))
    )
    viewer, _ = await launch_viewer(api, token(), "ws-ssh")
    try:
        assert await ended_with_error(viewer, 20) == "769"  # CLIENT_UNAUTHORIZED
        assert viewer.close_code == 1008
    finally:
        await viewer.close()


async def test_rdp_nla_wrong_password_is_a_refused_login(
    real_broker, rdp_nla_server, password_file, token
):
    server = rdp_nla_server
    api = await real_broker(
        workspace(
            "ws-rdp",
            "rdp",
            server,
            password_file=password_file(WRONG),
            security="nla",
            ignore_cert=True,
        )
    )
    viewer, _ = await launch_viewer(api, token(), "ws-rdp")
    try:
        # guacd 1.5.5 says UPSTREAM_NOT_FOUND "Server refused connection", as for
        # an unreachable server; the broker finds the server answering.
        assert await ended_with_error(viewer, 20) == "769"
        error = next(i for i in viewer.received if i.opcode == "error")
        assert f"{server.host}:{server.port} {REFUSED_LOGIN}" in error.args[0]
    finally:
        await viewer.close()


async def test_rdp_tls_wrong_password_is_an_error(
    real_broker, rdp_tls_server, password_file, token
):
    """With TLS security the server checks the password once the desktop is up
    (Windows shows its own logon error there); FreeRDP's shadow server drops
    the connection, and guacd knows only "Connection closed": an error, never
    a normal end, but not one that can name the password."""
    api = await real_broker(
        workspace(
            "ws-rdp",
            "rdp",
            rdp_tls_server,
            password_file=password_file(WRONG),
            security="tls",
            ignore_cert=True,
        )
    )
    viewer, _ = await launch_viewer(api, token(), "ws-rdp")
    try:
        assert await ended_with_error(viewer, 20) == "520"  # UPSTREAM_UNAVAILABLE
    finally:
        await viewer.close()


async def test_vnc_wrong_password_is_a_refused_login(real_broker, vnc_server, password_file, token):
    api = await real_broker(
        workspace("ws-vnc", "vnc", vnc_server, password_file=password_file(WRONG))
    )
    viewer, _ = await launch_viewer(api, token(), "ws-vnc")
    try:
        # guacd 1.5.5 says only ``disconnect`` (once nudged), as when nothing
        # listens; the broker finds the server answering.
        assert await ended_with_error(viewer, 20) == "769"
        error = next(i for i in viewer.received if i.opcode == "error")
        assert REFUSED_LOGIN in error.args[0]
    finally:
        await viewer.close()


async def test_recorded_workspace_writes_a_guacamole_stream(
    real_broker, vnc_server, password_file, token, tmp_path
):
    recordings = tmp_path / "recordings"
    api = await real_broker(
        workspace(
            "ws-rec",
            "vnc",
            vnc_server,
            password_file=password_file(vnc_server.password),
            recording_path=str(recordings),
        )
    )
    viewer, session_id = await launch_viewer(api, token(), "ws-rec")
    await viewer.first_frame()
    await viewer.mouse(300, 300)
    await viewer.close()
    recording = recordings / session_id

    def complete() -> bool:
        return recording.exists() and b"4.sync," in recording.read_bytes()

    await eventually(complete, f"a recording at {recording}")
    opcodes = {i.opcode for i in _parse(recording)}
    assert {"img", "sync"} <= opcodes


def _parse(path: Path) -> list:
    parser = Parser()
    data = path.read_bytes()
    instructions = parser.feed(data)
    # guacd may still be writing the last instruction: only whole ones count.
    assert instructions and parser.pending < len(data)
    return instructions
