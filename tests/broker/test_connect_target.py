"""The connect target: guacd and the HTML5 proxy connect only to the address a
recorded tunnel grant gave, never to the displayed ``ip_address`` (whose
placeholder, ``10.0.0.1``, is often a live host in a real network).

A relaunch that races the first launch gets the session back before its grant
is recorded: the simulated NetBird holds the first launch's policy while the
same user launches again and opens the viewer. The simulated guacd records
every connect request it gets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import update

from broker.core.models import UNKNOWN_IP, Session
from broker.web.http import BROKER
from protocols.instruction import Parser
from tests.broker.apiclient import Api
from tests.broker.viewer_support import finish, open_tunnel, read_until
from tunnels.simulated.faults import FaultKind
from tunnels.simulated.seed import Seed, SeedPeer, SeedToken
from tunnels.simulated.server import RecordedRequest, SimulatedNetBird

pytestmark = pytest.mark.db

TOKEN = "nbp_" + "connectTarget".ljust(36, "0")
WORKSPACES = """
[[workspaces]]
id = "ws-rdp"
name = "Windows"
type = "rdp"
peer = "ws-rdp-peer"
username = "alice"
password_env = "TEST_WS_PASSWORD"
"""
NETBIRD = """
[tunnel]
provider = "netbird"
reconcile_interval_seconds = 3600

[netbird]
base_url = "{url}"
timeout_seconds = 5
max_retries = 1
"""
PREPARING = "The network path to this workspace is still being prepared"


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedNetBird]:
    seed = Seed(
        tokens=(SeedToken(TOKEN, role="network_admin", name="broker"),),
        gateways=(SeedPeer("gateway-1", "127.64.0.2"),),
        workspaces=(SeedPeer("ws-rdp-peer", "127.64.0.11"),),
    )
    async with SimulatedNetBird(seed) as server:
        yield server
        assert server.invalid_requests() == []


@pytest.fixture
async def api(start_broker, make_settings, sim, guacd, monkeypatch) -> Api:
    monkeypatch.setenv("TEST_WS_PASSWORD", "s3cret-Pa55word")
    settings = make_settings(
        NETBIRD.format(url=sim.url),
        env={
            "BROKER_NETBIRD_TOKEN": TOKEN,
            "BROKER_GUACD_ENDPOINTS": f"127.0.0.1:{guacd.port}",
        },
        workspaces=WORKSPACES,
    )
    return Api(await start_broker(settings))


def policy_created(r: RecordedRequest) -> bool:
    return r.method == "POST" and r.path == "/api/policies"


async def viewer_info(api: Api, sid: str, credential: str) -> dict[str, Any]:
    """What the viewer page reads to decide whether to retry."""
    headers = {"Authorization": f"Bearer {credential}"}
    async with api.client.get(f"/viewer/{sid}/info", headers=headers) as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


def errors(frames: list[str]) -> list[tuple[str, ...]]:
    parser = Parser()
    instructions = [i for frame in frames for i in parser.feed(frame.encode())]
    return [tuple(i.args) for i in instructions if i.opcode == "error"]


async def test_viewer_of_a_relaunch_racing_the_first_never_reaches_the_placeholder(
    api, sim, guacd, token
):
    t = token()
    sim.inject(FaultKind.SLOW, method="POST", path="/api/policies", delay=1.5)
    first = asyncio.create_task(api.launch("ws-rdp", t))
    async with asyncio.timeout(5):
        await sim.wait_for_request(policy_created)
    again = await api.launch("ws-rdp", t)  # the same user, before the grant is recorded
    assert again.status == 200, again.body
    sid, viewer_token = again.body["session_id"], again.body["viewer_token"]
    assert again.body["tunnel_status"] == "pending"

    # The viewer is refused with a status of its own, not 520 (guacd unavailable).
    ws = await open_tunnel(api, sid, viewer_token)
    frames, code, reason = await finish(ws)
    assert (code, reason) == (1011, "514")
    assert errors(frames) == [(PREPARING, "514")]
    assert guacd.handshakes == type(guacd.handshakes)()  # guacd was never asked
    info = await viewer_info(api, sid, viewer_token)
    assert (info["tunnel_status"], info["path_ready"]) == ("pending", False)
    session = (await api.get(f"/api/sessions/{sid}", t)).body
    assert session["ip_address"] == UNKNOWN_IP  # shown, never connected to

    # Once the grant is recorded the viewer connects to the workspace's peer.
    assert (await first).status == 201
    info = await viewer_info(api, sid, viewer_token)
    assert (info["tunnel_status"], info["path_ready"]) == ("encrypted", True)
    ws = await open_tunnel(api, sid, viewer_token)
    await read_until(ws, lambda f: "4.sync," in f)
    (record,) = guacd.handshakes
    assert (record.parameters["hostname"], record.parameters["port"]) == ("127.64.0.11", "3389")
    assert record.parameters["password"] == "s3cret-Pa55word"
    await ws.close()


async def test_viewer_of_a_session_whose_grant_failed_is_refused_without_retry(api, guacd, token):
    t = token()
    launched = (await api.launch("ws-rdp", t)).body
    sid = launched["session_id"]
    async with api.client.app[BROKER].db() as db, db.begin():  # the grant was lost
        await db.execute(update(Session).where(Session.id == sid).values(tunnel_status="failed"))
    ws = await open_tunnel(api, sid, launched["viewer_token"])
    frames, code, reason = await finish(ws)
    assert (code, reason) == (1011, "514")
    assert errors(frames) == [("The network path to this workspace failed", "514")]
    info = await viewer_info(api, sid, launched["viewer_token"])
    assert (info["tunnel_status"], info["path_ready"]) == ("failed", False)
    assert guacd.handshakes == type(guacd.handshakes)()
