"""Only what guacamole-common-js sends as a client reaches guacd: through a real
broker and the simulated guacd, which records every instruction it receives."""

from __future__ import annotations

import base64

import pytest

from protocols.instruction import Instruction
from tests.broker.apiclient import Api
from tests.broker.viewer_support import finish, launch, open_tunnel, read_until

pytestmark = pytest.mark.db

KEY = "3.key,5.65307,1.1;"


@pytest.fixture
async def api(broker_for, guacd) -> Api:
    result: Api = await broker_for(guacd.port)
    return result


@pytest.mark.parametrize(
    "instruction",
    [
        Instruction("select", ("ssh",)),
        Instruction("connect", ("VERSION_1_5_0", "10.0.0.1", "22", "root")),
        Instruction("file", ("0", "text/plain", "notes.txt")),  # no file transfer here
    ],
)
async def test_a_viewer_sending_what_no_client_sends_is_closed_783(api, guacd, token, instruction):
    launched = await launch(api, token())
    ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
    await read_until(ws, lambda f: "4.sync," in f)
    await ws.send_str(KEY)  # typing still works
    await guacd.wait_for(lambda: any(i.opcode == "key" for i in guacd.received), timeout=10)
    await ws.send_str(instruction.encode())
    frames, code, reason = await finish(ws)
    assert (code, reason) == (1003, "783")  # CLIENT_BAD_TYPE, what guacamole-common-js shows
    errors = [f for f in frames if f.startswith("5.error,")]
    assert len(errors) == 1 and errors[0].endswith("3.783;")
    # The refused instruction never reached guacd; the relay's leaving did.
    await guacd.wait_for(lambda: guacd.disconnects == 1, timeout=10)
    assert [i.opcode for i in guacd.received] == ["key", "disconnect"]


async def test_clipboard_never_reaches_guacd_when_paste_is_disabled(api, guacd, token):
    launched = await launch(api, token(), "ws-locked")
    ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
    await read_until(ws, lambda f: "4.sync," in f)
    text = base64.b64encode(b"rm -rf /").decode()
    await ws.send_str(Instruction("clipboard", ("0", "text/plain")).encode())
    await ws.send_str(Instruction("blob", ("0", text)).encode())
    _, code, reason = await finish(ws)
    assert (code, reason) == (1003, "783")
    assert all(i.opcode not in ("clipboard", "blob") for i in guacd.received)


async def test_clipboard_reaches_guacd_when_paste_is_allowed(api, guacd, token):
    launched = await launch(api, token())
    ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
    await read_until(ws, lambda f: "4.sync," in f)
    text = base64.b64encode(b"hello").decode()
    for instruction in (
        Instruction("clipboard", ("0", "text/plain")),
        Instruction("blob", ("0", text)),
        Instruction("end", ("0",)),
    ):
        await ws.send_str(instruction.encode())
    await guacd.wait_for(lambda: list(guacd.clipboard_received) == ["hello"], timeout=10)
    # The desktop copies it back: the viewer's clipboard shows it.
    await read_until(ws, lambda f: "9.clipboard," in f)
    await ws.close()
