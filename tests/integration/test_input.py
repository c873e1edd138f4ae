"""What the user does reaches the remote side: typed commands run, the
clipboard goes both ways (VNC, on TigerVNC's Xtigervnc, which owns the X
selections itself: x11vnc 0.9.16 on Xvfb never serves them), and the
credential prompt lets a user in when no password is stored (VNC, RDP with
NLA)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from tests.integration.client import RETURN
from tests.integration.conftest import workspace
from tests.integration.support import eventually, launch_viewer, x_selection

pytestmark = pytest.mark.real_guacd


def unique_file() -> Path:
    return Path("/tmp") / f"guac-typed-{uuid.uuid4().hex[:12]}"


async def test_ssh_typed_command_runs(real_broker, ssh_server, password_file, token):
    api = await real_broker(
        workspace("ws-ssh", "ssh", ssh_server, password_file=password_file(ssh_server.password))
    )
    viewer, _ = await launch_viewer(api, token(), "ws-ssh")
    await viewer.first_frame()
    target = unique_file()
    try:
        await viewer.type_text(f"touch {target}")
        await viewer.key(RETURN)
        await eventually(target.exists, f"{target} created by the typed command")
        assert target.owner() == ssh_server.username  # it ran in the user's shell
    finally:
        target.unlink(missing_ok=True)
        await viewer.close()


async def test_vnc_typed_command_runs_in_xterm(real_broker, vnc_server, password_file, token):
    api = await real_broker(
        workspace("ws-vnc", "vnc", vnc_server, password_file=password_file(vnc_server.password))
    )
    viewer, _ = await launch_viewer(api, token(), "ws-vnc")
    await viewer.first_frame()
    target = unique_file()
    try:
        await viewer.mouse(200, 200)  # over the xterm: keyboard focus follows the pointer
        await viewer.type_text(f"touch {target}")
        await viewer.key(RETURN)
        await eventually(target.exists, f"{target} created by the command typed into xterm")
    finally:
        target.unlink(missing_ok=True)
        await viewer.close()


async def test_vnc_clipboard_from_viewer_to_remote(
    real_broker, tigervnc_server, password_file, token
):
    api = await real_broker(
        workspace(
            "ws-vnc", "vnc", tigervnc_server, password_file=password_file(tigervnc_server.password)
        )
    )
    viewer, _ = await launch_viewer(api, token(), "ws-vnc")
    await viewer.first_frame()
    text = f"pasted-{uuid.uuid4().hex[:8]}"
    try:
        await viewer.send_text_stream("clipboard", "text/plain", text=text)
        display = tigervnc_server.display.name  # type: ignore[union-attr]
        await eventually(
            lambda: x_selection(display, "clipboard") == text,
            "the pasted text in the remote CLIPBOARD selection",
            limit=8,
        )
    finally:
        await viewer.close()


async def test_vnc_clipboard_from_remote_to_viewer(
    real_broker, tigervnc_server, password_file, token, tmp_path
):
    api = await real_broker(
        workspace(
            "ws-vnc", "vnc", tigervnc_server, password_file=password_file(tigervnc_server.password)
        )
    )
    viewer, _ = await launch_viewer(api, token(), "ws-vnc")
    await viewer.first_frame()
    text = f"copied-{uuid.uuid4().hex[:8]}"
    # xclip owns the selection while it runs (in the foreground with -quiet).
    owner = await asyncio.create_subprocess_exec(
        "xclip",
        "-quiet",
        "-selection",
        "clipboard",
        "-i",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={"DISPLAY": tigervnc_server.display.name},
    )
    try:
        assert owner.stdin is not None
        owner.stdin.write(text.encode())
        owner.stdin.close()
        await viewer.wait_for(lambda i: text in viewer.received_streams("clipboard"), limit=8)
    finally:
        owner.terminate()
        await asyncio.wait_for(owner.wait(), 5)
        await viewer.close()


async def test_vnc_credential_prompt(real_broker, vnc_server, token):
    api = await real_broker(workspace("ws-vnc", "vnc", vnc_server))  # no stored password
    viewer, _ = await launch_viewer(api, token(), "ws-vnc")
    try:
        asked = await viewer.answer_required({"password": vnc_server.password})
        assert asked == ["password"]
        await viewer.first_frame()
    finally:
        await viewer.close()


async def test_rdp_nla_credential_prompt(real_broker, rdp_nla_server, token):
    server = rdp_nla_server
    api = await real_broker(
        workspace("ws-rdp", "rdp", server, security="nla", ignore_cert=True)  # no password
    )
    viewer, _ = await launch_viewer(api, token(), "ws-rdp")
    try:
        asked = await viewer.answer_required(
            {"username": server.username, "password": server.password, "domain": ""}
        )
        assert "password" in asked
        await viewer.first_frame()
    finally:
        await viewer.close()
