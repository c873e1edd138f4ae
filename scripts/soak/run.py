"""The soak run: its processes, its phases, its verdict (see `scripts.soak`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocols.simulated.guacd import SimulatedGuacd, SimulatedGuacdOptions
from scripts.processes import (
    ROOT,
    ProcessFailed,
    broker_errors,
    free_port,
    start_broker,
    stop_process,
    wait_for_line,
)
from scripts.soak.driver import Driver, Sample

RSS_TOLERANCE = 0.05


# -- the simulated guacd, as a process of its own -----------------------------------------


async def serve_guacd(port: int, max_connections: int) -> None:
    """Serve a simulated guacd on ``127.0.0.1:port`` until SIGINT or SIGTERM."""
    options = SimulatedGuacdOptions(
        first_frame_delay=0.05, idle_sync_interval=1.0, max_connections=max_connections
    )
    server = SimulatedGuacd(options)
    await server.start("127.0.0.1", port)
    print(f"simulated guacd listening on 127.0.0.1:{server.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await server.aclose()


@dataclass
class Setup:
    """The broker's config for a run: one workspace per stream session, plus
    the churn workspaces."""

    streams: int
    workspaces: int
    churn_workspaces: int
    workdir: Path

    def config(self, port: int, guacd_port: int) -> str:
        head = textwrap.dedent(f"""
            [server]
            host = "127.0.0.1"
            port = {port}
            data_dir = "{self.workdir / "data"}"
            max_pending_headers_per_ip = 100000  # every load client is one address

            [guacd]
            endpoints = ["127.0.0.1:{guacd_port}"]

            [ratelimit]
            user_launches_per_minute = 600.0
            user_launch_burst = 100
            ip_launches_per_minute = 6000.0
            ip_launch_burst = 10000
            """)
        blocks = []
        for i in range(self.workspaces):
            blocks.append(f'[[workspaces]]\nid = "ws-{i:03d}"\nname = "Soak {i}"\ntype = "vnc"\n')
        for j in range(self.churn_workspaces):
            blocks.append(f'[[workspaces]]\nid = "churn-{j}"\nname = "Churn {j}"\ntype = "rdp"\n')
        return head + "\n" + "\n".join(blocks)


async def drive(
    args: argparse.Namespace,
    base: str,
    secret: str,
    broker: subprocess.Popen[bytes],
    broker_log: Path,
) -> dict[str, Any]:
    driver = Driver(args, base, secret, broker.pid)
    try:
        sessions = await driver.launch_stream_sessions()
        await driver.warm_pool()
        await driver.drop_idle_connections()
        start = await driver.settle(None)
        print(start.row("idle (start)"), flush=True)

        began = time.monotonic()
        await driver.open_streams(sessions)
        stop_churn = asyncio.Event()
        churn = asyncio.create_task(driver.churn(stop_churn))
        await asyncio.sleep(max(0.0, args.warmup - (time.monotonic() - began)))
        warm = await driver.sample()
        print(warm.row("after warm-up"), flush=True)

        next_report = time.monotonic() + args.report_every
        while time.monotonic() - began < args.duration:
            if broker.poll() is not None:
                driver.errors.add("broker", f"exited with {broker.returncode}")
                break
            await asyncio.sleep(min(1.0, max(0.0, args.duration - (time.monotonic() - began))))
            if time.monotonic() >= next_report:
                now = await driver.sample()
                frames = sum(v.frames for v in driver.viewers)
                print(
                    f"  t={time.monotonic() - began:6.0f}s {now.rss_kib / 1024:7.1f} MiB "
                    f"{now.fds} fds {now.tasks} tasks {now.viewers} streams "
                    f"{frames} frames {driver.launches} launches "
                    f"errors={driver.errors.total}",
                    flush=True,
                )
                next_report += args.report_every
        end = await driver.sample()
        print(end.row("end"), flush=True)

        stop_churn.set()
        await asyncio.wait_for(churn, 30)
        await driver.close_streams()
        await driver.drop_idle_connections()
        after = await driver.settle(start)
        print(after.row("idle (after)"), flush=True)
        return summarize(
            args, driver, start, warm, end, after, time.monotonic() - began, broker_log
        )
    finally:
        await driver.http.close()
        await driver.probe.close()


def summarize(
    args: argparse.Namespace,
    driver: Driver,
    start: Sample,
    warm: Sample,
    end: Sample,
    after: Sample,
    seconds: float,
    broker_log: Path,
) -> dict[str, Any]:
    for line in broker_errors(broker_log)[:20]:
        driver.errors.add("broker log", line)
    rss_change = (end.rss_kib - warm.rss_kib) / warm.rss_kib
    checks = {
        "no errors": driver.errors.total == 0,
        "rss within 5% of warm-up": abs(rss_change) <= RSS_TOLERANCE,
        "fds back to idle": after.fds == start.fds,
        "tasks back to idle": after.tasks == start.tasks,
        "all streams open at the end": end.viewers == args.streams,
    }
    return {
        "streams": args.streams,
        "sessions": args.workspaces,
        "seconds": round(seconds, 1),
        "frames": sum(v.frames for v in driver.viewers),
        "mb_to_viewers": round(sum(v.bytes for v in driver.viewers) / 1e6, 1),
        "churn_launches": driver.launches,
        "churn_disconnects": driver.disconnects,
        "errors": driver.errors.total,
        "error_kinds": dict(driver.errors.counts),
        "error_examples": driver.errors.examples,
        "rss_mib": [round(s.rss_kib / 1024, 1) for s in (start, warm, end, after)],
        "rss_change_warmup_to_end": round(rss_change * 100, 2),
        "fds": [s.fds for s in (start, warm, end, after)],
        "tasks": [s.tasks for s in (start, warm, end, after)],
        "checks": checks,
        "pass": all(checks.values()),
    }


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="broker-soak-") as tmp:
        workdir = Path(tmp)
        guacd_port, port = free_port(), free_port()
        guacd_log, broker_log = workdir / "guacd.log", workdir / "broker.log"
        with guacd_log.open("wb") as out:
            guacd = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "scripts.soak",
                    "--serve-guacd",
                    str(guacd_port),
                    "--max-connections",
                    str(args.streams * 2 + 100),
                ],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        broker: subprocess.Popen[bytes] | None = None
        try:
            wait_for_line(guacd, guacd_log, "listening", 30)
            setup = Setup(args.streams, args.workspaces, args.churn_workspaces, workdir)
            config = workdir / "broker.toml"
            config.write_text(setup.config(port, guacd_port))
            secret = secrets.token_urlsafe(48)
            broker = start_broker(config, secret=secret, log=broker_log)
            wait_for_line(broker, broker_log, "broker listening", 60)
            base = f"http://127.0.0.1:{port}"
            print(
                f"soak: {args.streams} streams over {args.workspaces} sessions for "
                f"{args.duration:g} s (warm-up {args.warmup:g} s), a launch every "
                f"{args.churn_every:g} s; broker pid {broker.pid}",
                flush=True,
            )
            result = asyncio.run(drive(args, base, secret, broker, broker_log))
        finally:
            if broker is not None:
                stop_process(broker)
            stop_process(guacd)
    print("checks:")
    for name, ok in result["checks"].items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    for example in result["error_examples"]:
        print(f"  error: {example}")
    print("summary: " + json.dumps({k: v for k, v in result.items() if k != "error_examples"}))
    print(
        f"soak: streams={result['streams']} seconds={result['seconds']} "
        f"errors={result['errors']} rss_mib={result['rss_mib']} fds={result['fds']} "
        f"tasks={result['tasks']} result={'PASS' if result['pass'] else 'FAIL'}"
    )
    return 0 if result["pass"] else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m scripts.soak",
        description="Soak: many viewer streams through the broker for a long time.",
    )
    p.add_argument("--streams", type=int, default=200, help="viewer streams held open")
    p.add_argument(
        "--workspaces",
        type=int,
        default=0,
        help="sessions the streams are spread over (default: streams / 10)",
    )
    p.add_argument("--minutes", type=float, default=10.0, help="how long the streams run")
    p.add_argument("--seconds", type=float, default=0.0, help="the same in seconds (wins)")
    p.add_argument(
        "--warmup",
        type=float,
        default=0.0,
        help="seconds before the warm-up sample (default: 10%% of the run, 5-60 s)",
    )
    p.add_argument("--churn-every", type=float, default=1.0, help="seconds between launches")
    p.add_argument("--churn-workspaces", type=int, default=5)
    p.add_argument("--key-every", type=float, default=2.0, help="seconds between a viewer's keys")
    p.add_argument("--report-every", type=float, default=30.0)
    p.add_argument("--serve-guacd", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--max-connections", type=int, default=1000, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.duration = args.seconds or args.minutes * 60
    args.workspaces = args.workspaces or max(1, args.streams // 10)
    if not args.warmup:
        args.warmup = min(60.0, max(5.0, args.duration / 10))
    if args.warmup >= args.duration:
        p.error("--warmup must be shorter than the run")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_guacd is not None:
        asyncio.run(serve_guacd(args.serve_guacd, args.max_connections))
        return 0
    try:
        return run(args)
    except ProcessFailed as exc:
        print(f"soak: a process did not start: {exc}", file=sys.stderr)
        return 1
