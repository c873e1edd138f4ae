"""The relay's cost: CPU time of the broker process per MB relayed to browsers.

Usage (from the repository root; `make bench` runs it)::

    .venv/bin/python -m benchmarks.relay_bench [--viewers 8] [--rounds 4] [--capture PATH]
        [--answer-syncs] [--hold N]

Three processes on loopback, so each one's CPU is its own:

- a simulated guacd replaying a real guacd capture at full speed
  (``python -m protocols.simulated.guacd --mode replay``);
- the broker (``python -m broker serve``, SQLite, ``direct`` tunnel);
- this script: launches one session and opens ``--viewers`` WebSocket
  tunnels at once, like guacamole-common-js (subprotocol, ping echo ignored;
  with ``--answer-syncs`` it answers every ``sync`` as guacamole-common-js
  does, which guacd needs to pace itself), reading every byte, ``--rounds``
  times.

With ``--hold N`` it measures memory instead: the broker's RSS (VmRSS) once
started on a database already migrated (``broker migrate`` first, as in
production), then with N viewer streams open at the capture's pace (guacd
``--pace``, syncs answered), and the difference per stream.

Prints bytes relayed, wall time, throughput, the broker's CPU seconds (user +
system, from /proc) per MB, and frames per MB (batching). The guacd side and
the reading side are not counted. The figure to compare with other relays
(guacamole-lite, guapy) is "broker CPU ms per MB".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import aiohttp

from broker.core.auth import mint_dev_token
from scripts.processes import ROOT, free_port, start_broker, stop_process, wait_ready

CAPTURES = ROOT / "tests" / "data"  # copies of real guacd output (tests/data/README.md)
SECRET = "relay-benchmark-secret-0123456789abcdef"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


async def wait_port(port: int) -> None:
    for _ in range(300):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"port {port} did not open")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


# A frame's ``sync`` instructions (base64 blobs hold no "," or "."); the browser
# answers each with the same timestamp, like guacamole-common-js.
SYNCS = re.compile(r"(?:^|;)4\.sync,\d+\.(\d+)[,;]")


async def view(
    http: aiohttp.ClientSession, url: str, expected: int, *, answer_syncs: bool = False
) -> tuple[int, int]:
    """Open one tunnel, read ``expected`` bytes of guacd output; (bytes, frames)."""
    got = frames = 0
    async with http.ws_connect(url, protocols=("guacamole",), max_msg_size=0) as ws:
        await ws.receive_str()  # the tunnel UUID
        while got < expected:
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"tunnel ended early: {msg}")
            got += len(msg.data)
            frames += 1
            if answer_syncs:
                for stamp in SYNCS.findall(msg.data):
                    await ws.send_str(f"4.sync,{len(stamp)}.{stamp};")
    return got, frames


def mint() -> str:
    return mint_dev_token(SECRET, issuer="bench", audience="bench", sub="bench", email="b@x")


def start(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], int]:
    """Start the simulated guacd and the broker; (guacd, broker, broker port)."""
    tmp = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    guacd_port, broker_port = free_port(), free_port()
    config = tmp / "broker.toml"
    config.write_text(
        textwrap.dedent(f"""
        [server]
        data_dir = "{tmp}"
        [auth]
        issuer = "bench"
        audience = "bench"
        [guacd]
        endpoints = ["127.0.0.1:{guacd_port}"]
        [[workspaces]]
        id = "bench"
        name = "Bench"
        type = "{args.capture.name.split("-")[0]}"
        [[workspaces]]
        id = "other"
        name = "Other"
        type = "ssh"
        """)
    )
    guacd = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "protocols.simulated.guacd",
            "--port",
            str(guacd_port),
            "--mode",
            "replay",
            "--captures",
            str(args.capture.parent),
            "--first-frame-delay",
            "0",
            *(["--pace"] if args.hold else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    if args.hold:  # as in production: the schema is current before the broker starts
        subprocess.run(
            [sys.executable, "-m", "broker", "migrate", "--config", str(config)],
            check=True,
            cwd=ROOT,
            env={**os.environ, "BROKER_AUTH_HS256_SECRET": SECRET},
            stdout=subprocess.DEVNULL,
        )
    broker = start_broker(config, secret=SECRET, log=None, port=broker_port, log_level="WARNING")
    args.guacd_port = guacd_port
    return guacd, broker, broker_port


async def run(args: argparse.Namespace, broker: subprocess.Popen[bytes], broker_port: int) -> None:
    capture = args.capture.read_bytes()
    base = f"http://127.0.0.1:{broker_port}"
    await wait_port(args.guacd_port)
    await wait_ready(base + "/healthz", broker)
    if args.hold:
        await hold(args, broker, base)
        return
    token = mint()
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/api/workspaces/bench/launch", headers={"Authorization": f"Bearer {token}"}
        ) as r:
            launched = await r.json()
        url = (
            f"{base}/viewer/{launched['session_id']}/websocket-tunnel"
            f"?token={launched['viewer_token']}&GUAC_WIDTH=1024&GUAC_HEIGHT=768"
        )
        answer = args.answer_syncs
        await view(http, url, len(capture), answer_syncs=answer)  # warm-up
        cpu0, wall0 = cpu_seconds(broker.pid), time.perf_counter()
        total = frames = 0
        for _ in range(args.rounds):
            results = await asyncio.gather(
                *(view(http, url, len(capture), answer_syncs=answer) for _ in range(args.viewers))
            )
            total += sum(b for b, _ in results)
            frames += sum(f for _, f in results)
        wall = time.perf_counter() - wall0
        cpu = cpu_seconds(broker.pid) - cpu0
    mb = total / 1e6
    streams = args.viewers * args.rounds
    print(f"capture            {args.capture.name} ({len(capture):,} bytes)")
    print(f"viewer streams     {streams} ({args.viewers} at once x {args.rounds} rounds)")
    print(f"relayed            {mb:.1f} MB in {wall:.2f} s = {mb / wall:.1f} MB/s")
    print(f"broker CPU         {cpu:.2f} s = {cpu * 1000 / mb:.1f} ms per MB relayed")
    print("                   (includes per-stream setup: token check, guacd handshake)")
    print(
        f"frames             {frames:,} = {frames / mb:.0f} per MB"
        f" ({total / frames / 1024:.1f} KiB per frame)"
    )


async def hold(args: argparse.Namespace, broker: subprocess.Popen[bytes], base: str) -> None:
    """RSS once started (after a first request), then with ``--hold`` paced
    viewer streams open (each reading and answering syncs)."""
    token = mint()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/workspaces", headers={"Authorization": f"Bearer {token}"}):
            pass
        await asyncio.sleep(1)
        idle = rss_kib(broker.pid)
        async with http.post(
            f"{base}/api/workspaces/bench/launch", headers={"Authorization": f"Bearer {token}"}
        ) as r:
            launched = await r.json()
        url = (
            f"{base}/viewer/{launched['session_id']}/websocket-tunnel"
            f"?token={launched['viewer_token']}&GUAC_WIDTH=1024&GUAC_HEIGHT=768"
        )
        endless = 1 << 60  # read until cancelled
        viewers = [
            asyncio.create_task(view(http, url, endless, answer_syncs=True))
            for _ in range(args.hold)
        ]
        await asyncio.sleep(args.hold_seconds)
        held = rss_kib(broker.pid)
        for task in viewers:
            task.cancel()
        await asyncio.gather(*viewers, return_exceptions=True)
    print(f"broker RSS idle    {idle / 1024:.1f} MB (started, one API request served)")
    print(
        f"with {args.hold} streams  {held / 1024:.1f} MB = {(held - idle) / args.hold:.0f} KB"
        f" per stream (at the capture's pace, after {args.hold_seconds:g} s)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--capture", type=Path, default=CAPTURES / "vnc-x11vnc-20s.guac")
    p.add_argument("--viewers", type=int, default=8)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--answer-syncs", action="store_true", help="answer syncs like a browser")
    p.add_argument("--hold", type=int, default=0, help="measure RSS with N paced streams")
    p.add_argument("--hold-seconds", type=float, default=10.0)
    args = p.parse_args()
    guacd, broker, port = start(args)
    try:
        asyncio.run(run(args, broker, port))
    finally:
        for proc in (broker, guacd):
            stop_process(proc, 15)


if __name__ == "__main__":
    main()
