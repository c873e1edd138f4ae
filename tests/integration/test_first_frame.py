"""Each protocol reaches a first frame through the broker's viewer tunnel,
against the real guacd and real servers: what a user sees as "it connected"."""

from __future__ import annotations

import pytest

from tests.broker.viewer_support import launch
from tests.integration.client import open_viewer
from tests.integration.conftest import workspace

pytestmark = pytest.mark.real_guacd


async def test_vnc_first_frame(real_broker, vnc_server, password_file, token):
    api = await real_broker(
        workspace("ws-vnc", "vnc", vnc_server, password_file=password_file(vnc_server.password))
    )
    launched = await launch(api, token(), "ws-vnc")
    viewer = await open_viewer(api, launched["session_id"], launched["viewer_token"])
    await viewer.first_frame()
    size = next(i for i in viewer.received if i.opcode == "size" and i.args[0] == "0")
    assert size.args[1:3] == (str(vnc_server.display.width), str(vnc_server.display.height))
    await viewer.close()


@pytest.mark.parametrize("security", ["tls", "nla"])
async def test_rdp_first_frame(real_broker, request, password_file, token, security):
    server = request.getfixturevalue(f"rdp_{security}_server")
    api = await real_broker(
        workspace(
            "ws-rdp",
            "rdp",
            server,
            password_file=password_file(server.password),
            security=security,
            ignore_cert=True,
        )
    )
    launched = await launch(api, token(), "ws-rdp")
    viewer = await open_viewer(api, launched["session_id"], launched["viewer_token"])
    await viewer.first_frame()
    await viewer.close()


async def test_ssh_first_frame(real_broker, ssh_server, password_file, token):
    api = await real_broker(
        workspace("ws-ssh", "ssh", ssh_server, password_file=password_file(ssh_server.password))
    )
    launched = await launch(api, token(), "ws-ssh")
    viewer = await open_viewer(api, launched["session_id"], launched["viewer_token"])
    await viewer.first_frame()
    await viewer.close()
