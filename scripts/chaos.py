"""Chaos run: a real broker process killed (SIGKILL) at random moments during a
stream of launches, disconnects, stops and viewer connects; then the promises
of RELIABILITY.md are checked.

    .venv/bin/python -m scripts.chaos [--kills 50] [--seed N] [--database-url URL]

The simulated NetBird and the simulated guacd run inside this script, so they
outlive every kill (like the real ones would). After the last kill the broker
is started once more and given time for one reconcile pass; then:

1. at most one active session per workspace;
2. every active session has its grant (a NetBird policy with the stored id);
3. every ended session has ``ended_at`` and an ``end_reason``;
4. no orphan grant: every ``broker:`` policy belongs to an active session;
5. audit entries match the state changes: one ``launch_workspace`` per
   session, one ending entry per ended session (none for active ones), of the
   kind its ``end_reason`` says;
6. every acknowledged operation (the client got a 2xx) is in the database
   and the audit log;
7. a viewer can reconnect to a session that is still active.

Prints the figures and exits 1 on any violation. Stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from broker.core.auth import mint_dev_token
from protocols.simulated.guacd import SimulatedGuacd, SimulatedGuacdOptions
from scripts.processes import free_port, start_broker, stop_process, wait_ready
from tunnels.simulated.seed import Seed, SeedPeer, SeedToken
from tunnels.simulated.server import SimulatedNetBird

SECRET = "chaos-secret-0123456789-abcdefghijklmnop"
PAT = "nbp_" + "chaosBroker".ljust(36, "0")
WORKSPACES = 6
USERS = ("ann", "ben", "cai", "dee")
END_ACTIONS = {
    "user_disconnect": "disconnect_session",
    "workspace_stop": "stop_workspace",
    "launch_failed": "launch_failed",
}


@dataclass
class Acks:
    launches: dict[str, tuple[str, str]] = field(default_factory=dict)  # sid -> (user, token)
    ends: dict[str, str] = field(default_factory=dict)  # sid -> audit action
    ops: Counter[str] = field(default_factory=Counter)


def token(user: str) -> str:
    return mint_dev_token(
        SECRET, issuer="chaos", audience="chaos", sub=user, email=f"{user}@example.com", ttl=3600
    )


def write_config(workdir: Path, netbird_url: str, guacd_port: int, db_url: str) -> Path:
    workspaces = "".join(
        f'\n[[workspaces]]\nid = "ws-{i}"\nname = "Desk {i}"\ntype = "vnc"\npeer = "peer-{i}"\n'
        for i in range(WORKSPACES)
    )
    config = workdir / "broker.toml"
    config.write_text(
        textwrap.dedent(f"""
        [server]
        data_dir = "{workdir / "data"}"
        max_pending_headers_per_ip = 100000  # every load client is one address
        [database]
        url = "{db_url}"
        auto_migrate = true
        [auth]
        issuer = "chaos"
        audience = "chaos"
        [tunnel]
        provider = "netbird"
        reconcile_interval_seconds = 0.5
        revoke_retry_seconds = 0.2
        launch_timeout_seconds = 2.0
        [netbird]
        base_url = "{netbird_url}"
        timeout_seconds = 5
        [guacd]
        endpoints = ["127.0.0.1:{guacd_port}"]
        [limits]
        max_sessions_per_user = 0
        """)
        + workspaces
    )
    return config


class Broker:
    def __init__(self, config: Path, workdir: Path) -> None:
        self.config, self.workdir = config, workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        log = self.workdir / "broker.log"
        self.proc = await asyncio.to_thread(
            start_broker,
            self.config,
            secret=SECRET,
            log=log,
            port=self.port,
            log_level="WARNING",
            env={"BROKER_NETBIRD_TOKEN": PAT},
        )
        await wait_ready(self.base + "/healthz", self.proc, log=log)

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(self.proc.wait, 10)

    async def stop(self) -> None:
        if self.proc is not None:
            await asyncio.to_thread(stop_process, self.proc, 30)


async def operate(http: aiohttp.ClientSession, base: str, rng: random.Random, acks: Acks) -> None:
    """One random operation; acknowledged results are recorded."""
    user = rng.choice(USERS)
    auth = {"Authorization": f"Bearer {token(user)}"}
    kind = rng.choices(["launch", "disconnect", "stop", "view"], [4, 2, 1, 2])[0]
    acks.ops[kind] += 1
    if kind == "launch":
        ws = f"ws-{rng.randrange(WORKSPACES)}"
        async with http.post(f"{base}/api/workspaces/{ws}/launch", headers=auth) as r:
            if r.status in (200, 201):
                body = await r.json()
                acks.launches[body["session_id"]] = (user, body["viewer_token"])
        return
    mine = [sid for sid, (u, _) in acks.launches.items() if u == user and sid not in acks.ends]
    if not mine:
        return
    sid = rng.choice(mine)
    if kind == "disconnect":
        async with http.post(f"{base}/api/sessions/{sid}/disconnect", headers=auth) as r:
            if r.status == 200:
                acks.ends[sid] = "disconnect_session"
    elif kind == "stop":
        async with http.get(f"{base}/api/sessions/{sid}", headers=auth) as r:
            if r.status != 200:
                return
            ws = (await r.json())["workspace_id"]
        async with http.post(f"{base}/api/workspaces/{ws}/stop", headers=auth) as r:
            if r.status == 200:
                acks.ends[(await r.json())["session"]["id"]] = "stop_workspace"
    else:
        await view(http, base, sid, acks.launches[sid][1], hold=rng.uniform(0, 0.3))


async def view(http: aiohttp.ClientSession, base: str, sid: str, viewer: str, hold: float) -> bool:
    """Open the viewer; True when the desktop's first sync arrived."""
    url = f"{base}/viewer/{sid}/websocket-tunnel?token={viewer}"
    async with http.ws_connect(url, protocols=("guacamole",)) as ws:
        first = await ws.receive(timeout=10)
        if first.type != aiohttp.WSMsgType.TEXT or not first.data.startswith("0.,36."):
            return False
        while True:
            msg = await ws.receive(timeout=10)
            if msg.type != aiohttp.WSMsgType.TEXT:
                return False
            if "4.sync," in msg.data:
                await asyncio.sleep(hold)
                return True


async def workload(
    http: aiohttp.ClientSession, base: str, rng: random.Random, acks: Acks, workers: int
) -> None:
    async def worker() -> None:
        while True:
            try:
                await operate(http, base, rng, acks)
            except (aiohttp.ClientError, TimeoutError, ConnectionError):
                await asyncio.sleep(0.01)  # the broker died under us: expected here

    await asyncio.gather(*(worker() for _ in range(workers)))


async def read_state(db_url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            sessions = [
                dict(r._mapping) for r in await conn.execute(text("SELECT * FROM sessions"))
            ]
            audit = [
                dict(r._mapping)
                for r in await conn.execute(text("SELECT action, session_id FROM audit_events"))
            ]
    finally:
        await engine.dispose()
    return sessions, audit


def check(
    sessions: list[dict[str, Any]],
    audit: list[dict[str, Any]],
    policies: list[dict[str, Any]],
    acks: Acks,
) -> list[str]:
    """Every invariant; returns the violations."""
    bad: list[str] = []
    active = [s for s in sessions if s["status"] == "active"]
    per_ws = Counter(s["workspace_id"] for s in active)
    bad += [f"{ws}: {n} active sessions" for ws, n in per_ws.items() if n > 1]
    by_name = {p["name"]: p for p in policies}
    for s in active:
        policy = by_name.get(f"broker:{s['id']}")
        if s["grant_id"] is None or policy is None or policy["id"] != s["grant_id"]:
            bad.append(f"active session {s['id']} has no grant")
    for s in sessions:
        if s["status"] != "active" and (s["ended_at"] is None or not s["end_reason"]):
            bad.append(f"ended session {s['id']} lacks ended_at or end_reason")
    active_ids = {s["id"] for s in active}
    bad += [
        f"orphan grant {name}"
        for name in by_name
        if name.startswith("broker:") and name[7:] not in active_ids
    ]
    actions: dict[str, Counter[str]] = {}
    for entry in audit:
        actions.setdefault(entry["session_id"], Counter())[entry["action"]] += 1
    for s in sessions:
        got = actions.get(s["id"], Counter())
        if got["launch_workspace"] != 1:
            bad.append(f"session {s['id']}: {got['launch_workspace']} launch entries")
        ends = {a: n for a, n in got.items() if a in (*END_ACTIONS.values(), "end_session")}
        if s["status"] == "active" and ends:
            bad.append(f"active session {s['id']} has ending entries {ends}")
        if s["status"] != "active":
            expected = END_ACTIONS.get(s["end_reason"], "end_session")
            if ends != {expected: 1}:
                bad.append(f"session {s['id']} ({s['end_reason']}): ending entries {ends}")
    known = {s["id"]: s for s in sessions}
    bad += [f"acknowledged launch {sid} missing" for sid in acks.launches if sid not in known]
    for sid, action in acks.ends.items():
        stored = known.get(sid)
        if (
            stored is None
            or stored["status"] == "active"
            or actions.get(sid, Counter())[action] != 1
        ):
            bad.append(f"acknowledged end of {sid} ({action}) missing")
    return bad


async def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="broker-chaos-"))
    db_url = args.database_url or f"sqlite+aiosqlite:///{workdir / 'data' / 'broker.db'}"
    seed = Seed(
        tokens=(SeedToken(PAT, role="network_admin", name="broker"),),
        gateways=(SeedPeer("gateway-1", "127.64.0.2"),),
        workspaces=tuple(SeedPeer(f"peer-{i}", f"127.64.1.{10 + i}") for i in range(WORKSPACES)),
    )
    acks = Acks()
    started = time.monotonic()
    async with SimulatedNetBird(seed) as netbird:
        guacd = SimulatedGuacd(SimulatedGuacdOptions(first_frame_delay=0.05))
        await guacd.start(host="127.0.0.1", port=0)
        broker = Broker(write_config(workdir, netbird.url, guacd.port, db_url), workdir)
        timeout = aiohttp.ClientTimeout(total=15)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            try:
                for kill in range(args.kills):
                    await broker.start()
                    load = asyncio.create_task(workload(http, broker.base, rng, acks, 6))
                    await asyncio.sleep(rng.uniform(0.2, 1.5))
                    await broker.kill()
                    load.cancel()
                    await asyncio.gather(load, return_exceptions=True)
                    print(
                        f"kill {kill + 1}/{args.kills}: {len(acks.launches)} launches acked",
                        flush=True,
                    )
                await broker.start()
                violations = await settle(db_url, netbird, acks)
                reconnected = await reconnect(http, broker.base, db_url, acks)
            finally:
                await broker.stop()
                await guacd.aclose()
    elapsed = time.monotonic() - started
    if reconnected is False:
        violations.append("no viewer could reconnect to a still-active session")
    for v in violations[:50]:
        print("VIOLATION:", v)
    summary = {
        "kills": args.kills,
        "seconds": round(elapsed, 1),
        "operations": dict(acks.ops),
        "acknowledged_launches": len(acks.launches),
        "acknowledged_ends": len(acks.ends),
        "viewer_reconnected": reconnected,
        "violations": len(violations),
    }
    print(json.dumps(summary))  # the last line: the tests read it
    return 0 if not violations else 1


async def settle(db_url: str, netbird: SimulatedNetBird, acks: Acks) -> list[str]:
    """Wait (bounded) for the reconciler to finish, then report violations."""
    deadline = time.monotonic() + 30
    while True:
        sessions, audit = await read_state(db_url)
        violations = check(sessions, audit, netbird.policies(), acks)
        if not violations or time.monotonic() > deadline:
            return violations
        await asyncio.sleep(0.25)


async def reconnect(http: aiohttp.ClientSession, base: str, db_url: str, acks: Acks) -> bool | None:
    """A viewer reconnects to a session still active after the kills: True when
    one did, False when none of them could, None when no session whose viewer
    token the run holds is still active (nothing to check)."""
    sessions, _ = await read_state(db_url)
    active = [s["id"] for s in sessions if s["status"] == "active" and s["id"] in acks.launches]
    for sid in active:
        try:
            if await view(http, base, sid, acks.launches[sid][1], hold=0):
                return True
        except (aiohttp.ClientError, TimeoutError):
            continue
    return False if active else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=50)
    p.add_argument("--seed", type=int, default=int(time.time()))
    p.add_argument("--database-url", default="", help="default: a fresh SQLite file")
    args = p.parse_args()
    print(f"chaos: {args.kills} kills, seed {args.seed}", flush=True)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
