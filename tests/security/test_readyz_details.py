"""``/readyz`` tells anyone whether the broker is ready and which check is
not, by name; what the checks saw at NetBird (the service user and its role,
group ids, peer and policy counts) only an admin's JWT gets. Loopback is not
exempt: behind a reverse proxy on the same host every caller is loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.conftest import auth
from tunnels.simulated.seed import Seed, SeedPeer, SeedToken
from tunnels.simulated.server import SimulatedNetBird

pytestmark = pytest.mark.db

PAT = "nbp_" + "ReadinessDetailsServiceUser".ljust(36, "3")
NETBIRD = """
[tunnel]
provider = "netbird"
reconcile_interval_seconds = 3600

[netbird]
base_url = "{url}"
timeout_seconds = 2.0
"""
WORKSPACES = """
[[workspaces]]
id = "ws-rdp"
name = "Windows"
type = "rdp"
peer = "ws-rdp-peer"
"""


@pytest.fixture
async def netbird() -> AsyncIterator[SimulatedNetBird]:
    seed = Seed(
        tokens=(SeedToken(PAT, role="network_admin", name="broker-svc"),),
        gateways=(SeedPeer("gateway-1", "127.64.0.2"),),
        workspaces=(SeedPeer("ws-rdp-peer", "127.64.0.11"),),
    )
    async with SimulatedNetBird(seed) as server:
        yield server


@pytest.fixture
async def broker(
    start_broker: Callable[..., Any], make_settings: Callable[..., Any], netbird: SimulatedNetBird
) -> TestClient[web.Request, web.Application]:
    settings = make_settings(
        NETBIRD.format(url=netbird.url), env={"BROKER_NETBIRD_TOKEN": PAT}, workspaces=WORKSPACES
    )
    client: TestClient[web.Request, web.Application] = await start_broker(settings)
    return client


async def test_anyone_learns_only_ready_and_the_check_names(
    broker: TestClient[web.Request, web.Application], token: Callable[..., str]
) -> None:
    r = await broker.get("/readyz")  # from loopback, as through a local reverse proxy
    body = await r.json()
    assert r.status == 200 and body["status"] == "ready"
    assert body["checks"]["netbird_credentials"] == {"ok": True}
    assert all(check == {"ok": True} for check in body["checks"].values())
    text = json.dumps(body)
    for detail in ("broker-svc", "network_admin", "gateways", "peer", " policy", " policies"):
        assert detail not in text, detail

    r = await broker.get("/readyz", headers=auth(token("root", roles=["admin"])))
    admin_view = json.dumps(await r.json())
    assert r.status == 200
    assert "broker-svc" in admin_view and "network_admin" in admin_view
    assert "peer(s)" in admin_view and "polic" in admin_view

    # A user's token or a forged one gets no details either.
    r = await broker.get("/readyz", headers=auth(token("alice")))
    assert r.status == 403 and "broker-svc" not in await r.text()
    r = await broker.get("/readyz", headers=auth("not-a-token"))
    assert r.status == 401 and "broker-svc" not in await r.text()


async def test_a_failing_check_is_named_without_what_it_saw(
    broker: TestClient[web.Request, web.Application], netbird: SimulatedNetBird
) -> None:
    await netbird.aclose()  # NetBird goes away
    r = await broker.get("/readyz")
    body = await r.json()
    assert r.status == 503 and body["status"] == "not_ready"
    failing = [name for name, check in body["checks"].items() if not check["ok"]]
    assert failing
    assert body["detail"] == "Not ready: " + ", ".join(failing)
    assert all(set(check) == {"ok"} for check in body["checks"].values())
