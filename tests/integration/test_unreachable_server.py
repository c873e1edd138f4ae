"""Fix 2 of issue 12: a workspace whose server cannot be reached ends in an
error that says so, never in the normal end ("You disconnected"). guacd 1.5.5
answers such a VNC or SSH connection with ``ready`` and then only
``disconnect``: the broker turns that into 519 "The remote desktop at
host:port could not be reached". RDP reports it itself: exactly once."""

from __future__ import annotations

import asyncio

import pytest

from scripts.processes import free_port
from tests.integration.conftest import UNIX_USER, workspace
from tests.integration.servers import Server
from tests.integration.support import launch_viewer

pytestmark = pytest.mark.real_guacd

LIMIT = 10.0
RETURN = 0xFF0D  # X keysym


def closed_port_server(username: str = "") -> Server:
    """A loopback port nothing listens on."""
    return Server("127.0.0.1", free_port(), username=username)


@pytest.mark.parametrize("protocol", ["vnc", "ssh"])
async def test_unreachable_server_is_named_in_the_error(
    real_broker, password_file, token, protocol
):
    server = closed_port_server(UNIX_USER if protocol == "ssh" else "")
    api = await real_broker(
        workspace("ws", protocol, server, password_file=password_file("secret1"))
    )
    viewer, _ = await launch_viewer(api, token(), "ws")
    try:
        # The client writes nothing but its answers to ``sync``.
        await asyncio.wait_for(viewer.closed.wait(), LIMIT)
        assert viewer.close_reason == "519", (viewer.close_reason, viewer.tail())
        last = viewer.received[-1]
        assert last.opcode == "error", viewer.tail()
        assert "could not be reached" in last.args[0], last.args
        assert f"127.0.0.1:{server.port}" in last.args[0], last.args
        assert last.args[1] == "519"
        assert "disconnect" not in viewer.opcodes(), viewer.tail()
    finally:
        await viewer.close()


async def test_unreachable_rdp_server_gives_one_519(real_broker, password_file, token):
    server = closed_port_server(UNIX_USER)
    api = await real_broker(
        workspace("ws", "rdp", server, password_file=password_file("secret1"), ignore_cert=True)
    )
    viewer, _ = await launch_viewer(api, token(), "ws")
    try:
        await asyncio.wait_for(viewer.closed.wait(), LIMIT)
        errors = [i for i in viewer.received if i.opcode == "error"]
        assert [e.args[1] for e in errors] == ["519"], viewer.tail()
        assert viewer.close_reason == "519"
        assert "disconnect" not in viewer.opcodes(), viewer.tail()
    finally:
        await viewer.close()


async def test_ssh_login_prompt_to_an_unreachable_server_is_an_error(
    real_broker, password_file, token
):
    """Without a stored username guacd 1.5.5 draws its own "Login as:" prompt
    (and a ``sync``) before it connects; when it then cannot reach the server
    it says only 519 "Aborted. See logs.". The broker finds the address
    unreachable and ends with 519 naming it."""
    server = closed_port_server()
    api = await real_broker(workspace("ws", "ssh", server, password_file=password_file("s1")))
    viewer, _ = await launch_viewer(api, token(), "ws")
    try:
        await viewer.first_frame()  # the prompt
        await viewer.type_text(UNIX_USER)
        await viewer.key(RETURN)
        await asyncio.wait_for(viewer.closed.wait(), LIMIT)
        assert viewer.close_reason == "519", (viewer.close_reason, viewer.tail())
        last = viewer.received[-1]
        assert last.opcode == "error", viewer.tail()
        assert f"127.0.0.1:{server.port} could not be reached" in last.args[0], last.args
        assert "disconnect" not in viewer.opcodes(), viewer.tail()
    finally:
        await viewer.close()
