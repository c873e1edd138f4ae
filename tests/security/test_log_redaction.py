"""No secret reaches a log: a whole flow through the real NetBird provider (with
its PAT) against the simulated NetBird, guacd and web app, with the access log
that ``broker serve`` uses and every application log record captured at
DEBUG, is searched for every secret it used: JWTs, viewer tokens, the app
cookie, the PAT, a workspace password from the environment, the HS256
secret, and a forged token. The audit trail and the API's answers are
searched as well (a viewer token only ever appears in its launch answer)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from broker.app import create_app
from broker.web.logs import AccessLogger
from protocols.simulated.guacd import SimulatedGuacd
from protocols.simulated.webapp import SimulatedWebApp
from tests.broker.apiclient import Api
from tests.conftest import TEST_SECRET, auth
from tests.security.conftest import DISPLAY, LocalhostResolver
from tunnels.simulated.seed import Seed, SeedPeer, SeedToken
from tunnels.simulated.server import SimulatedNetBird

pytestmark = pytest.mark.db

PAT = "nbp_" + "RedactionTestServiceUser".ljust(36, "7")
PASSWORD = "Workspace-Pa55word-from-env!"
WEB_IP = "127.64.0.12"
FORGED = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSIsInJvbGVzIjpbImFkbWluIl19."

WORKSPACES = """
[[workspaces]]
id = "ws-rdp"
name = "Windows"
type = "rdp"
peer = "ws-rdp-peer"
username = "alice"
password_env = "REDACTION_TEST_PASSWORD"

[[workspaces]]
id = "ws-wiki"
name = "Wiki"
type = "html5"
peer = "ws-wiki-peer"
port = {port}
"""
NETBIRD = """
[tunnel]
provider = "netbird"
reconcile_interval_seconds = 3600

[netbird]
base_url = "{url}"
timeout_seconds = 2.0
"""


@pytest.fixture
async def netbird() -> AsyncIterator[SimulatedNetBird]:
    seed = Seed(
        tokens=(SeedToken(PAT, role="network_admin", name="broker"),),
        gateways=(SeedPeer("gateway-1", "127.64.0.2"),),
        workspaces=(SeedPeer("ws-rdp-peer", "127.64.0.11"), SeedPeer("ws-wiki-peer", WEB_IP)),
    )
    async with SimulatedNetBird(seed) as server:
        yield server


@pytest.fixture
async def web_app() -> AsyncIterator[SimulatedWebApp]:
    app = SimulatedWebApp()
    await app.start(WEB_IP, 0)
    yield app
    await app.aclose()


@pytest.fixture
async def broker(
    make_settings: Callable[..., Any],
    netbird: SimulatedNetBird,
    guacd: SimulatedGuacd,
    web_app: SimulatedWebApp,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    monkeypatch.setenv("REDACTION_TEST_PASSWORD", PASSWORD)
    settings = make_settings(
        NETBIRD.format(url=netbird.url),
        env={"BROKER_NETBIRD_TOKEN": PAT, "BROKER_GUACD_ENDPOINTS": f"127.0.0.1:{guacd.port}"},
        workspaces=WORKSPACES.format(port=web_app.port),
    )
    # The access log class `broker serve` runs with.
    # (TestServer ignores constructor keywords: they go to start_server.)
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server(access_log_class=AccessLogger)
    client: TestClient[web.Request, web.Application] = TestClient(server)
    await client.start_server()
    yield client
    await client.close()


async def test_a_full_flow_logs_no_secret(
    broker: TestClient[web.Request, web.Application],
    netbird: SimulatedNetBird,
    guacd: SimulatedGuacd,
    web_app: SimulatedWebApp,
    token: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    api = Api(broker)
    alice = token("alice")
    admin = token("root", roles=["admin"])
    answers: list[Any] = []

    # Failed sign-ins: a forged token, a bad viewer token, on the API and the tunnel.
    for bad in (FORGED, "not-a-viewer-token-but-secret-looking-0123456789"):
        r = await broker.get("/api/sessions", headers=auth(bad))
        assert r.status == 401
        answers.append(await r.text())

    # Launch both workspaces over NetBird.
    rdp = (await api.launch("ws-rdp", alice)).body
    wiki = (await api.launch("ws-wiki", alice)).body
    assert rdp["tunnel_status"] == wiki["tunnel_status"] == "encrypted"
    secrets = {
        "alice's JWT": alice,
        "the admin's JWT": admin,
        "a forged JWT": FORGED,
        "the RDP viewer token": rdp["viewer_token"],
        "the wiki viewer token": wiki["viewer_token"],
        "the NetBird PAT": PAT,
        "the workspace password": PASSWORD,
        "the HS256 secret": TEST_SECRET,
    }

    # The viewer tunnel with ?token=, a refused one too; the password reaches guacd only.
    url = f"/viewer/{rdp['session_id']}/websocket-tunnel?token={rdp['viewer_token']}&{DISPLAY}"
    ws = await broker.ws_connect(url, protocols=("guacamole",))
    assert (await ws.receive_str(timeout=10)).startswith("0.,36.")
    while "4.sync," not in await ws.receive_str(timeout=10):
        pass
    await ws.send_str("0.,4.ping,13.1700000000000;")
    await ws.close()
    assert guacd.last_handshake is not None
    assert guacd.last_handshake.parameters["password"] == PASSWORD
    bad_tunnel = url.replace(rdp["viewer_token"], "guessed" + rdp["viewer_token"][7:])
    ws = await broker.ws_connect(bad_tunnel, protocols=("guacamole",))
    async for _ in ws:
        pass
    answers.append(
        (await broker.get(f"/viewer/{rdp['session_id']}/info", headers=auth(alice))).status
    )

    # The HTML5 cookie exchange and a proxied page.
    port = broker.port
    origin = f"http://{wiki['session_id']}.localhost:{port}"
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=LocalhostResolver())
    ) as browser:
        async with browser.post(
            origin + "/__broker/session",
            json={"token": wiki["viewer_token"]},
            headers={"Origin": origin},
        ) as r:
            assert r.status == 200
            answers.append(await r.text())
        (cookie,) = [c.value for c in browser.cookie_jar]
        secrets["the app cookie"] = cookie
        async with browser.get(origin + "/headers", headers=auth(alice)) as r:
            seen_by_app = await r.text()
    assert web_app.requests == ["GET /headers"]
    for name in ("alice's JWT", "the app cookie", "the wiki viewer token"):
        assert secrets[name] not in seen_by_app, name

    # Disconnect with the viewer token and with the JWT; audit read back.
    r = await api.post(f"/api/sessions/{rdp['session_id']}/disconnect", rdp["viewer_token"])
    assert r.status == 200
    r = await api.post(f"/api/sessions/{wiki['session_id']}/disconnect", alice)
    assert r.status == 200
    assert netbird.policies() == []  # both grants revoked, with the PAT
    audit = await api.get("/api/admin/audit", admin, params={"limit": "1000"})
    sessions = await api.get("/api/admin/sessions", admin)
    metrics = await (await broker.get("/metrics")).text()
    answers += [audit.body, sessions.body, metrics]

    logged = caplog.text + "\n".join(
        json.dumps([r.getMessage(), r.exc_text, r.stack_info]) for r in caplog.records
    )
    assert "GET /viewer/" in logged  # the access log was captured
    for name, value in secrets.items():
        for piece in (value, value[-16:]):
            assert piece not in logged, f"{name} is in the log"
    # Nothing but the launch answers ever carried a viewer token; no answer
    # carried a PAT, a password or the HS256 secret.
    shown = json.dumps(answers, default=str)
    for name in ("the NetBird PAT", "the workspace password", "the HS256 secret"):
        assert secrets[name] not in shown, f"{name} was in an answer"
    for name in ("the RDP viewer token", "the wiki viewer token", "the app cookie"):
        assert secrets[name] not in shown, f"{name} was in an answer"
