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


async def test_rdp_nla_wrong_password_is_refused(real_broker, rdp_nla_server, password_file, token):
    api = await real_broker(
        workspace(
            "ws-rdp",
            "rdp",
            rdp_nla_server,
            password_file=password_file(WRONG),
            security="nla",
            ignore_cert=True,
        )
    )
    viewer, _ = await launch_viewer(api, token(), "ws-rdp")
    try:
        # guacd 1.5.5 cannot tell a refused NLA login from a refused security
        # type: UPSTREAM_NOT_FOUND with "Server refused connection".
        assert await ended_with_error(viewer, 20) == "519"
        error = next(i for i in viewer.received if i.opcode == "error")
        assert "refused" in error.args[0]
    finally:
        await viewer.close()


@pytest.mark.slow  # guacd says nothing until its client timeout in most runs: ~15 s
async def test_vnc_wrong_password_is_an_error(real_broker, vnc_server, password_file, token):
    api = await real_broker(
        workspace("ws-vnc", "vnc", vnc_server, password_file=password_file(WRONG))
    )
    viewer, _ = await launch_viewer(api, token(), "ws-vnc")
    try:
        # 519 "Aborted. See logs." when guacd reports it; when its VNC plugin
        # stays silent, guacd's own client timeout (776) after about 15 s.
        assert await ended_with_error(viewer, 30) in ("519", "776")
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
