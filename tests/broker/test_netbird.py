"""The broker with the real NetBird provider against the simulated NetBird
Management API: a session's network grant lives exactly as long as the session."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import pytest
import requests

from broker.core.audit import Actor
from broker.core.models import EndReason
from broker.core.reconciler import reconcile_once
from broker.web.http import BROKER
from tests.broker.apiclient import Api
from tests.conftest import AUDIENCE, ISSUER, TEST_SECRET
from tests.processes import free_port, start_broker_process, wait_ready
from tunnels.simulated.seed import Seed, SeedPeer, SeedToken
from tunnels.simulated.server import SimulatedNetBird

pytestmark = pytest.mark.db

TOKEN = "nbp_" + "brokerServiceUser".ljust(36, "0")
NETBIRD_ENV = {"BROKER_NETBIRD_TOKEN": TOKEN}
ADMIN_TOKEN = "nbp_" + "brokerAdminUser".ljust(36, "0")
WORKSPACES = """
[[workspaces]]
id = "ws-linux"
name = "Linux"
type = "linux"
peer = "ws-linux-peer"

[[workspaces]]
id = "ws-rdp"
name = "Windows"
type = "rdp"
peer = "ws-rdp-peer"
"""
NETBIRD = """
[tunnel]
provider = "netbird"
revoke_retry_seconds = 0.05
reconcile_interval_seconds = 3600

[netbird]
base_url = "{url}"
timeout_seconds = 0.5
max_retries = 3
max_retry_seconds = 2.0
"""


@pytest.fixture
def seed() -> Seed:
    return Seed(
        tokens=(
            SeedToken(TOKEN, role="network_admin", name="broker"),
            SeedToken(ADMIN_TOKEN, role="admin", name="ops"),
        ),
        gateways=(SeedPeer("gateway-1", "127.64.0.2"),),
        workspaces=(
            SeedPeer("ws-linux-peer", "127.64.0.10"),
            SeedPeer("ws-rdp-peer", "127.64.0.11"),
        ),
    )


@pytest.fixture
async def sim(seed: Seed) -> AsyncIterator[SimulatedNetBird]:
    async with SimulatedNetBird(seed) as server:
        yield server
        assert server.invalid_requests() == []


@pytest.fixture
async def api(start_broker, make_settings, sim) -> Api:
    settings = make_settings(
        NETBIRD.format(url=sim.url), env={"BROKER_NETBIRD_TOKEN": TOKEN}, workspaces=WORKSPACES
    )
    return Api(await start_broker(settings))


async def test_launch_creates_one_exact_policy_and_end_deletes_it(api, sim, token):
    t = token()
    r = await api.launch("ws-linux", t)
    assert r.status == 201
    assert r.body["tunnel_status"] == "encrypted"
    assert r.body["security"]["tunnel"] == "netbird" and r.body["security"]["encrypted"] is True
    sid = r.body["session_id"]
    assert r.body["session"]["ip_address"] == "127.64.0.10"
    (policy,) = sim.policies()
    assert policy["name"] == f"broker:{sid}" and policy["description"] == sid
    assert policy["enabled"] is True
    (rule,) = policy["rules"]
    assert rule["enabled"] is True and rule["action"] == "accept"
    assert rule["bidirectional"] is False and rule["protocol"] == "tcp"
    assert rule["ports"] == ["5900"]
    assert [g["id"] if isinstance(g, dict) else g for g in rule["sources"]] == [
        sim.group_id("gateways")
    ]
    assert rule["destinationResource"] == {"id": sim.peer_id("ws-linux-peer"), "type": "peer"}
    r = await api.post(f"/api/sessions/{sid}/disconnect", t)
    assert r.status == 200
    assert sim.policies() == []
    s = (await api.get(f"/api/sessions/{sid}", t)).body
    assert (s["status"], s["tunnel_status"]) == ("disconnected", "revoked")


async def test_netbird_errors_during_launch_leave_nothing(api, sim, token):
    t = token()
    sim.inject("error", times=None, method="POST", path="/api/policies", status=500)
    r = await api.launch("ws-linux", t)
    assert r.status == 503 and "network path" in r.body["detail"]
    assert (await api.get("/api/sessions/active", t)).body == []
    assert sim.policies() == []
    sim.faults.clear()
    sim.inject("hang", times=None, method="POST", path="/api/policies")
    r = await api.launch("ws-linux", t)
    assert r.status == 503
    assert (await api.get("/api/sessions/active", t)).body == []
    sim.faults.clear()
    # A create that committed but whose answer was lost is found by name, not repeated.
    sim.inject("commit_then_error", times=1, method="POST", path="/api/policies", status=502)
    r = await api.launch("ws-linux", t)
    assert r.status == 201
    assert len(sim.policies()) == 1


async def test_unknown_peer_is_a_clear_502(start_broker, make_settings, sim, token):
    workspaces = WORKSPACES.replace('peer = "ws-rdp-peer"', 'peer = "no-such-peer"')
    settings = make_settings(
        NETBIRD.format(url=sim.url), env={"BROKER_NETBIRD_TOKEN": TOKEN}, workspaces=workspaces
    )
    api = Api(await start_broker(settings))
    r = await api.launch("ws-rdp", token())
    assert r.status == 502 and "no-such-peer" in r.body["detail"]
    assert TOKEN not in str(r.body)
    assert sim.policies() == []


async def test_netbird_down_at_disconnect_revokes_when_it_returns(api, sim, token):
    t = token()
    sid = (await api.launch("ws-rdp", t)).body["session_id"]
    sim.inject("error", times=None, method="DELETE", status=503)
    r = await api.post(f"/api/sessions/{sid}/disconnect", t)
    assert r.status == 200
    assert (await api.get(f"/api/sessions/{sid}", t)).body["status"] == "disconnected"
    assert len(sim.policies()) == 1
    sim.faults.clear()
    async with asyncio.timeout(10):
        await sim.wait_until(lambda: sim.policies() == [])
    admin = token("root", roles=["admin"])

    async def revoked() -> list[Any]:
        while True:
            entries = (
                await api.get(
                    "/api/admin/audit", admin, params={"action": "revoke_tunnel", "session": sid}
                )
            ).body
            if any(e["details"]["outcome"] == "revoked" for e in entries):
                return list(entries)
            await asyncio.sleep(0.02)

    entries = await asyncio.wait_for(revoked(), 10)
    assert {e["details"]["outcome"] for e in entries} == {"failed", "revoked"}


async def test_reconciler_removes_leftovers_and_flags_lost_grants(api, sim, token):
    broker = api.client.app[BROKER]
    t = token()
    live = (await api.launch("ws-linux", t)).body["session_id"]
    other = (await api.launch("ws-rdp", t)).body["session_id"]
    # A leftover: a policy whose session ended without its revoke (as after a crash).
    sim.inject("error", times=None, method="DELETE", status=503)
    await broker.sessions.end(other, EndReason.WORKSPACE_STOP, Actor.system())
    sim.faults.clear()
    # ... and a live session whose policy was deleted by hand at NetBird.
    (live_policy,) = [p for p in sim.policies() if p["name"] == f"broker:{live}"]
    del sim.account.policies[live_policy["id"]]
    first, second = await asyncio.gather(
        reconcile_once(broker.sessions, broker.tunnels, launch_timeout=120),
        reconcile_once(broker.sessions, broker.tunnels, launch_timeout=120),
    )
    assert sim.policies() == []
    assert first.lost + second.lost == 1
    s = (await api.get(f"/api/sessions/{live}", t)).body
    assert (s["status"], s["tunnel_status"]) == ("active", "failed")
    audit = (await api.get("/api/audit", t, params={"session": live})).body
    assert "tunnel_failed" not in [e["action"] for e in audit]  # a system entry, not the user's
    admin = token("root", roles=["admin"])
    entries = (
        await api.get(
            "/api/admin/audit", admin, params={"action": "tunnel_failed", "session": live}
        )
    ).body
    assert len(entries) == 1


async def test_reconciler_never_deletes_a_launch_in_flight(api, sim, token):
    broker = api.client.app[BROKER]
    sim.inject("slow", times=1, method="POST", path="/api/policies", delay=0.5)
    launch = asyncio.create_task(api.launch("ws-linux", token()))
    async with asyncio.timeout(10):
        await sim.wait_until(lambda: len(sim.policies()) == 1)
    await reconcile_once(broker.sessions, broker.tunnels, launch_timeout=120)
    r = await launch
    assert r.status == 201 and len(sim.policies()) == 1


async def test_killed_between_policy_and_commit_is_cleaned_after_restart(
    sim, tmp_path, database_url, token
):
    config = tmp_path / "broker.toml"
    config.write_text(
        textwrap.dedent(f"""
        [server]
        data_dir = "{tmp_path / "data"}"
        [database]
        url = "{database_url}"
        auto_migrate = true
        [auth]
        issuer = "{ISSUER}"
        audience = "{AUDIENCE}"
        [tunnel]
        provider = "netbird"
        reconcile_interval_seconds = 0.2
        launch_timeout_seconds = 1.0
        [netbird]
        base_url = "{sim.url}"
        timeout_seconds = 30
        """)
        + WORKSPACES
    )
    port = free_port()
    proc = start_broker_process(config, port, tmp_path, env=NETBIRD_ENV)
    try:
        await wait_ready(port, proc)
        sim.inject("commit_then_hang", times=1, method="POST", path="/api/policies")
        headers = {"Authorization": f"Bearer {token()}"}
        url = f"http://127.0.0.1:{port}/api/workspaces/ws-linux/launch"
        launch = asyncio.create_task(
            asyncio.to_thread(requests.post, url, headers=headers, timeout=60)
        )
        async with asyncio.timeout(10):
            await sim.wait_until(lambda: len(sim.policies()) == 1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        with pytest.raises(requests.ConnectionError):
            await launch
        sim.faults.clear()
        proc = start_broker_process(config, port, tmp_path, env=NETBIRD_ENV)
        await wait_ready(port, proc)
        async with asyncio.timeout(20):
            await sim.wait_until(lambda: sim.policies() == [])
        r = await asyncio.to_thread(
            requests.get, f"http://127.0.0.1:{port}/api/sessions", headers=headers, timeout=5
        )
        (s,) = r.json()
        assert (s["status"], s["end_reason"]) == ("terminated", "launch_failed")
        r = await asyncio.to_thread(requests.post, url, headers=headers, timeout=30)
        assert r.status_code == 201
        assert len(sim.policies()) == 1
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


async def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "broker", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


@pytest.mark.slow  # several broker processes: over 10 s
async def test_netbird_cli_check_and_enrol_key(sim, tmp_path, database_url):
    admin_token = ADMIN_TOKEN
    config = tmp_path / "broker.toml"
    config.write_text(
        textwrap.dedent(f"""
        [database]
        url = "{database_url}"
        [tunnel]
        provider = "netbird"
        [netbird]
        base_url = "{sim.url}"
        """)
        + WORKSPACES
    )
    env = {"BROKER_AUTH_HS256_SECRET": TEST_SECRET, "BROKER_NETBIRD_TOKEN": admin_token}
    done = await run_cli("netbird", "check", "--config", str(config), env=env)
    assert done.returncode == 0, done.stderr
    assert "ready" in done.stdout and "[ok] netbird_credentials" in done.stdout
    assert admin_token not in done.stdout + done.stderr
    done = await run_cli(
        "netbird",
        "enrol-key",
        "--workspace",
        "ws-linux",
        "--ephemeral",
        "--config",
        str(config),
        env=env,
    )
    assert done.returncode == 0, done.stderr
    (key,) = sim.account.setup_keys.values()
    assert key.key in done.stdout  # shown once, to the admin who asked
    assert key.body["type"] == "one-off" and key.body["ephemeral"] is True
    assert key.body["auto_groups"] == [sim.group_id("workspace-ws-linux")]
    # A token without the admin role cannot create keys: a clear failure.
    done = await run_cli(
        "netbird",
        "enrol-key",
        "--workspace",
        "ws-linux",
        "--config",
        str(config),
        env={**env, "BROKER_NETBIRD_TOKEN": TOKEN},
    )
    assert done.returncode == 1 and "NetBird" in done.stderr
    assert TOKEN not in done.stderr
