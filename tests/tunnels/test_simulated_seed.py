"""Seeding the simulated NetBird, and running it as a program."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from tunnels.simulated.seed import DEFAULT_TOKEN, Seed, SeedPeer, demo_seed
from tunnels.simulated.server import SimulatedNetBird


def test_overlay_addresses_outside_loopback_are_refused() -> None:
    with pytest.raises(ValueError, match="not 127.0.0.0/8"):
        SeedPeer("ws", "100.64.0.10")


def test_seed_from_json_and_toml(tmp_path: Path) -> None:
    data = {
        "tokens": [{"token": "nbp_" + "a" * 36, "role": "network_admin"}],
        "workspaces": [{"name": "ws-1", "ip": "127.64.0.10", "connected": False}],
        "all_to_all": True,
    }
    (tmp_path / "seed.json").write_text(json.dumps(data))
    toml = """
all_to_all = true
[[tokens]]
token = "nbp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
role = "network_admin"
[[workspaces]]
name = "ws-1"
ip = "127.64.0.10"
connected = false
"""
    (tmp_path / "seed.toml").write_text(toml)

    from_json = Seed.from_file(tmp_path / "seed.json")
    from_toml = Seed.from_file(tmp_path / "seed.toml")

    assert from_json == from_toml
    assert from_json.workspaces == (SeedPeer("ws-1", "127.64.0.10", connected=False),)
    assert from_json.gateways == Seed().gateways


def test_unknown_seed_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown seed keys"):
        Seed.from_mapping({"peers": []})


def test_seeded_account_has_all_gateways_and_workspaces() -> None:
    sim = SimulatedNetBird(demo_seed())

    groups = {g.name: g for g in sim.account.groups.values()}
    assert set(groups) == {"All", "gateways"}
    assert groups["gateways"].peers == [sim.peer_id("gateway-1")]
    assert set(groups["All"].peers) == set(sim.account.peers)
    assert sim.token == DEFAULT_TOKEN


async def test_runs_as_a_program(tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"workspaces": [{"name": "ws-1", "ip": "127.64.0.10"}]}))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tunnels.simulated.server", "--host", "127.0.0.1", "--port", "0",
        "--seed", str(seed),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        url = json.loads(line)["url"]
        headers = {"Authorization": f"Token {DEFAULT_TOKEN}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.get(url + "/api/peers?name=ws-1") as resp:
                peers = await resp.json()
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)

    assert [p["ip"] for p in peers] == ["127.64.0.10"]
    assert code == 0
