"""The cost of a viewer connect: a storm of viewers opening at once.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.connect_bench [--viewers 200] [--open 20]
        [--database-url postgresql+asyncpg://postgres@127.0.0.1:5432/NAME]

Three processes on loopback, so each one's CPU is its own:

- a simulated guacd replaying a real guacd capture at the capture's pace
  (``python -m protocols.simulated.guacd --mode replay --pace``);
- the broker (``broker serve --config``, run through `benchmarks.db.serve` so
  it counts the SQL statements it sends; SQLite unless ``--database-url``;
  ``direct`` tunnel; rate limits off), with one workspace per session (the
  broker allows one active session per workspace);
- this script: launches ``--viewers`` + ``--open`` sessions through the API,
  each for its own user and with its own viewer token; opens ``--open``
  viewers first (the streams already open) and sends a ``ping`` on each every
  50 ms, which the broker echoes itself: its round trip is how long the
  broker's event loop keeps an open stream waiting; then opens ``--viewers``
  viewers at once (the storm) and reads each until its first ``sync`` (the
  first whole frame of the desktop).

Prints: the broker's CPU (user + system, from /proc) from the storm's start
until the last viewer had its first frame, per connect; the time until all
had a first frame; the SQL statements per connect (at attach, and with the
detach once they all closed), the statements by text; and the ping round
trip of the open streams before and during the storm (p50, p99, max). The
load generator's own CPU is printed too, so a saturated generator shows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from broker.core.auth import mint_dev_token
from protocols.simulated.guacd import Mode, SimulatedGuacd, SimulatedGuacdOptions
from scripts.processes import ROOT, free_port, stop_process, wait_ready

CAPTURES = ROOT / "tests" / "data"
SECRET = "connect-benchmark-secret-0123456789abcdef"
PING_EVERY = 0.05


def cpu_times(pid: int) -> tuple[float, float]:
    """A process's (user, system) CPU seconds so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def config_text(
    tmp: Path, guacd_port: int, workspaces: int, database_url: str, protocol: str
) -> str:
    database = f'[database]\nurl = "{database_url}"\nauto_migrate = true\n' if database_url else ""
    out = textwrap.dedent(f"""
        [server]
        data_dir = "{tmp}"
        max_pending_headers_per_ip = 1000
        {database}
        [auth]
        issuer = "bench"
        audience = "bench"
        [guacd]
        endpoints = ["127.0.0.1:{guacd_port}"]
        [ratelimit]
        enabled = false
        [limits]
        max_sessions_per_user = 0
        """)
    for i in range(workspaces):
        out += f'\n[[workspaces]]\nid = "ws-{i}"\nname = "Desktop {i}"\ntype = "{protocol}"\n'
    return out


@dataclass
class Broker:
    process: subprocess.Popen[bytes]
    counts: Path
    base: str
    seq: int = 0

    async def statements(self) -> dict[str, Any]:
        """The broker's statement counts now (`benchmarks.db.serve`)."""
        self.process.send_signal(signal.SIGUSR1)
        for _ in range(200):
            await asyncio.sleep(0.02)
            try:
                data: dict[str, Any] = json.loads(self.counts.read_text())
            except (OSError, ValueError):
                continue
            if data["seq"] > self.seq:
                self.seq = data["seq"]
                return data
        raise RuntimeError("the broker did not write its statement counts")


def start(args: argparse.Namespace, tmp: Path) -> tuple[subprocess.Popen[bytes], Broker]:
    guacd_port, broker_port = free_port(), free_port()
    config = tmp / "broker.toml"
    config.write_text(
        config_text(tmp, guacd_port, args.viewers + args.open, args.database_url, args.protocol)
    )
    guacd = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.connect_bench", "--serve-guacd", str(guacd_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    counts = tmp / "counts.json"
    env = {**os.environ, "BROKER_AUTH_HS256_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "benchmarks.db.serve", str(counts), "--config", str(config)]
    command += ["--port", str(broker_port), "--log-level", "WARNING"]
    with (tmp / "broker.log").open("ab") as log:
        broker = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    if args.pin:
        subprocess.run(["taskset", "-pc", "0", str(broker.pid)], check=True, capture_output=True)
        subprocess.run(["taskset", "-pc", "1", str(guacd.pid)], check=True, capture_output=True)
        os.sched_setaffinity(0, {1})
    return guacd, Broker(broker, counts, f"http://127.0.0.1:{broker_port}")


async def launch(http: aiohttp.ClientSession, base: str, i: int) -> str:
    """Launch ws-<i> as user-<i>; the viewer tunnel's URL."""
    token = mint_dev_token(
        SECRET, issuer="bench", audience="bench", sub=f"user-{i}", email=f"user-{i}@example.com"
    )
    async with http.post(
        f"{base}/api/workspaces/ws-{i}/launch", headers={"Authorization": f"Bearer {token}"}
    ) as r:
        body = await r.json()
        if r.status not in (200, 201):
            raise RuntimeError(f"launch of ws-{i}: {r.status} {body}")
    return (
        f"{base}/viewer/{body['session_id']}/websocket-tunnel"
        f"?token={body['viewer_token']}&GUAC_WIDTH=1024&GUAC_HEIGHT=768"
    )


async def first_frame(http: aiohttp.ClientSession, url: str, t0: float) -> tuple[float, Any]:
    """Open a viewer and read until its first ``sync``: (seconds since ``t0``, socket)."""
    ws = await http.ws_connect(url, protocols=("guacamole",), max_msg_size=0)
    while True:
        msg = await ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"viewer closed before its first frame: {msg}")
        if "4.sync," in msg.data:
            return time.perf_counter() - t0, ws


@dataclass
class Pinger:
    """An open stream: reads everything, pings every 50 ms, times the echoes."""

    ws: Any
    sent: dict[str, float] = field(default_factory=dict)
    rtts: list[tuple[float, float]] = field(default_factory=list)  # (sent at, round trip)

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            data: str = msg.data
            if data.startswith("0.,4.ping,"):
                stamp = data.split(",")[2].split(".", 1)[1].rstrip(";")
                sent = self.sent.pop(stamp, None)
                if sent is not None:
                    self.rtts.append((sent, time.perf_counter() - sent))

    async def ping(self, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            stamp = str(n)
            self.sent[stamp] = time.perf_counter()
            await self.ws.send_str(f"0.,4.ping,{len(stamp)}.{stamp};")
            await asyncio.sleep(PING_EVERY)


def profile(out: str, pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the broker during the storm (``--py-spy OUT``), if asked."""
    if not out:
        return None
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "-p", str(pid), "-o", out, "-f", "raw", "-r", "250"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def quantiles(values: list[float]) -> str:
    if len(values) < 2:
        return "n/a"
    ms = sorted(v * 1000 for v in values)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (
        f"p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms (n={len(ms)})"
    )


def delta(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[int, str]]:
    """Statements run between two counts, by text, most first."""
    out = []
    for text, entry in after["seen"].items():
        n = sum(entry["by"].values())
        old = before["seen"].get(text)
        n -= sum(old["by"].values()) if old else 0
        if n:
            out.append((n, " ".join(text.split())))
    return sorted(out, reverse=True)


async def run(args: argparse.Namespace, broker: Broker, guacd: int) -> None:
    await wait_ready(broker.base + "/healthz", broker.process, limit=60)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        gate = asyncio.Semaphore(16)

        async def launch_one(i: int) -> str:
            async with gate:
                return await launch(http, broker.base, i)

        urls = await asyncio.gather(*(launch_one(i) for i in range(args.viewers + args.open)))
        storm_urls, open_urls = urls[: args.viewers], urls[args.viewers :]
        pingers = [Pinger((await first_frame(http, u, time.perf_counter()))[1]) for u in open_urls]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(p.read()) for p in pingers]
        tasks += [asyncio.create_task(p.ping(stop)) for p in pingers]
        await asyncio.sleep(2)  # the open streams' latency before the storm
        before = await broker.statements()
        spy = profile(args.py_spy, broker.process.pid)
        if spy is not None:
            await asyncio.sleep(1.0)  # attached before the storm starts
        cpu0, mine0, guacd0 = cpu_times(broker.process.pid), own_cpu(), cpu_seconds(guacd)
        t0 = time.perf_counter()
        results = await asyncio.gather(*(first_frame(http, u, t0) for u in storm_urls))
        wall = time.perf_counter() - t0
        user, system = (b - a for a, b in zip(cpu0, cpu_times(broker.process.pid), strict=True))
        cpu = user + system
        mine = own_cpu() - mine0
        guacd_cpu = cpu_seconds(guacd) - guacd0
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            await asyncio.to_thread(spy.wait, 30)
        attached = await broker.statements()
        await asyncio.sleep(1)
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ws in [w for _, w in results] + [p.ws for p in pingers]:
            await ws.close()
        await asyncio.sleep(2.5)  # detach writes (batched per interval) land
        detached = await broker.statements()
    n = args.viewers
    firsts = sorted(t for t, _ in results)
    quiet = [r for p in pingers for s, r in p.rtts if s < t0]
    storm = [r for p in pingers for s, r in p.rtts if t0 <= s <= t0 + wall]
    db = args.database_url.split("://")[0] if args.database_url else "sqlite"
    print(f"database             {db}")
    print(
        f"storm                {n} viewers of {n} {args.protocol} sessions at once,"
        f" {args.open} streams open"
    )
    print(f"all first frames in  {wall:.2f} s (median viewer {statistics.median(firsts):.2f} s)")
    print(
        f"broker CPU           {cpu:.2f} s = {cpu * 1000 / n:.1f} ms per connect"
        f" ({user * 1000 / n:.1f} user + {system * 1000 / n:.1f} system)"
    )
    print(f"generator CPU        {mine:.2f} s in {wall:.2f} s (this script)")
    print(f"simulated guacd CPU  {guacd_cpu:.2f} s")
    at_attach = attached["statements"] - before["statements"]
    with_detach = detached["statements"] - before["statements"]
    print(f"SQL per connect      {at_attach / n:.2f} at attach, {with_detach / n:.2f} with detach")
    events = detached.get("events", {})
    old = before.get("events", {})
    print(
        "  and per connect    "
        + ", ".join(f"{(events[k] - old.get(k, 0)) / n:.2f} {k}" for k in sorted(events))
        + " (storm through detach)"
    )
    print(f"open streams' ping   before: {quantiles(quiet)}")
    print(f"                     storm:  {quantiles(storm)}")
    print("statements (storm through detach):")
    for count, text in delta(before, detached)[:12]:
        print(f"  {count:6d}  {text[:150]}")


async def serve_guacd(port: int) -> None:
    """``python -m protocols.simulated.guacd --mode replay --pace`` with room for
    every viewer (its command line keeps the default of 64 connections)."""
    options = SimulatedGuacdOptions(
        mode=Mode.REPLAY,
        captures_dir=CAPTURES,
        replay_pace=True,
        first_frame_delay=0,
        max_connections=4096,
    )
    server = SimulatedGuacd(options)
    await server.start("127.0.0.1", port)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await server.aclose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--viewers", type=int, default=200)
    p.add_argument("--open", type=int, default=20, help="streams open before the storm")
    p.add_argument("--database-url", default="", help="PostgreSQL (default: SQLite)")
    p.add_argument(
        "--protocol",
        choices=("vnc", "rdp", "ssh"),
        default="vnc",
        help="the capture replayed: vnc sends 95 KB before its first sync, ssh 14 KB",
    )
    p.add_argument("--pin", action="store_true", help="broker on core 0, the rest on core 1")
    p.add_argument("--py-spy", default="", help="write a py-spy profile of the storm here")
    p.add_argument("--serve-guacd", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_guacd:
        asyncio.run(serve_guacd(args.serve_guacd))
        return
    tmp = Path(tempfile.mkdtemp(prefix="connect-bench-"))
    guacd, broker = start(args, tmp)
    try:
        asyncio.run(run(args, broker, guacd.pid))
    finally:
        for proc in (broker.process, guacd):
            stop_process(proc, 15)


if __name__ == "__main__":
    main()
