"""Soak: many viewer streams through the broker for a long time, with steady
launches and disconnects on the side, looking for errors and leaks.

Everything runs on loopback as real processes: the broker (``python -m broker
serve``), a simulated guacd (this script with ``--serve-guacd``), and this
driver, whose viewers behave like guacamole-common-js (they acknowledge each
``sync``, ping every 500 ms and expect the echo, and press a key now and then
so the desktop draws). Streams are spread over ``--workspaces`` sessions (one
per user; several viewers of one session each get their own guacd
connection). Meanwhile a churn loop launches a spare workspace, watches its
desktop until the first ``sync``, closes the viewer and disconnects, every
``--churn-every`` seconds.

Measured from ``/proc/<broker pid>`` (RSS, open file descriptors) and the
broker's ``broker_asyncio_tasks`` gauge at four points: idle before the
streams (sessions launched, database pool warmed), after the warm-up, at the
end of the run (streams still open), and idle again once every stream has
closed. It passes when:

- there were no errors (a stream closed or went silent unasked, an echo came
  later than 15 s, an unexpected HTTP status, an ERROR in the broker's log,
  the broker exiting);
- RSS at the end is within 5 % of RSS after the warm-up;
- file descriptors and asyncio tasks are back to their idle baseline (the
  same counts) once the streams have ended.

    python scripts/soak.py                          # 200 streams, 10 minutes (make soak)
    python scripts/soak.py --streams 20 --seconds 20 --warmup 5   # the short run in make test

Prints progress every ``--report-every`` seconds, a table of the four
points, then ``soak: ... result=PASS|FAIL`` and exits 0 on PASS. It stops by
itself: the run is bounded by its duration, and every wait has a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import socket
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
import jwt

ROOT = Path(__file__).resolve().parents[1]
ISSUER, AUDIENCE = "connection-broker-dev", "connection-broker"
DISPLAY = "GUAC_WIDTH=1024&GUAC_HEIGHT=768&GUAC_DPI=96&GUAC_IMAGE=image/png"
ECHO_LIMIT = 15.0  # guacamole-common-js closes a tunnel silent this long
SYNC = re.compile(r"4\.sync,(\d+)\.(\d+)")
RSS_TOLERANCE = 0.05


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# -- the simulated guacd, as a process of its own -----------------------------------------


async def serve_guacd(port: int, max_connections: int) -> None:
    sys.path.insert(0, str(ROOT))
    from protocols.simulated.guacd import SimulatedGuacd, SimulatedGuacdOptions

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


# -- processes ------------------------------------------------------------------------------


def wait_for_line(process: subprocess.Popen[bytes], log: Path, text: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"process exited early:\n{log.read_text(errors='replace')[-3000:]}")
        if text in log.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise SystemExit(f"no {text!r} within {limit:g} s:\n{log.read_text(errors='replace')[-3000:]}")


def stop_process(process: subprocess.Popen[bytes], limit: float = 20) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(limit)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Setup:
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


# -- measuring ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    rss_kib: int
    fds: int
    tasks: int
    viewers: int

    def row(self, name: str) -> str:
        mib = self.rss_kib / 1024
        counts = f"{self.fds:6d} fds {self.tasks:6d} tasks {self.viewers:5d} streams"
        return f"  {name:18} {mib:9.1f} MiB {counts}"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# -- the driver -----------------------------------------------------------------------------


@dataclass
class Errors:
    counts: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, kind: str, detail: str) -> None:
        self.counts[kind] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{kind}: {detail}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class Viewer:
    """One stream, as guacamole-common-js runs it."""

    def __init__(self, driver: Driver, session_id: str, token: str, key_every: float) -> None:
        self.driver = driver
        self.session_id = session_id
        self.token = token
        self.key_every = key_every
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.closing = False
        self.frames = 0
        self.bytes = 0
        self.syncs = 0
        self.last_echo = time.monotonic()
        self.first_sync = asyncio.Event()

    async def run(self) -> None:
        driver = self.driver
        url = (
            f"{driver.base}/viewer/{self.session_id}/websocket-tunnel?token={self.token}&{DISPLAY}"
        )
        try:
            self.ws = await driver.http.ws_connect(url, protocols=("guacamole",))
        except (aiohttp.ClientError, TimeoutError) as exc:
            driver.errors.add("connect", f"{self.session_id}: {type(exc).__name__}: {exc}")
            return
        tasks = [asyncio.create_task(self._pings()), asyncio.create_task(self._keys())]
        try:
            await self._read()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self) -> None:
        assert self.ws is not None
        ws = self.ws
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data: str = msg.data
            self.frames += 1
            self.bytes += len(data)
            if data.startswith("0.,4.ping,"):
                self.last_echo = time.monotonic()
                continue
            for match in SYNC.finditer(data):
                self.syncs += 1
                self.first_sync.set()
                # The client acknowledges each frame, which keeps guacd's
                # silence watchdog quiet.
                await self._send(f"4.sync,{match.group(1)}.{match.group(2)};")
        if not self.closing:
            self.driver.errors.add(
                "stream closed",
                f"{self.session_id}: code {ws.close_code} after {self.frames} frames",
            )

    async def _pings(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if time.monotonic() - self.last_echo > ECHO_LIMIT and not self.closing:
                self.driver.errors.add("echo late", f"{self.session_id}: no echo for 15 s")
                self.last_echo = time.monotonic()
            ms = str(int(time.time() * 1000))
            await self._send(f"0.,4.ping,{len(ms)}.{ms};")

    async def _keys(self) -> None:
        await asyncio.sleep(self.key_every * (0.2 + 0.8 * secrets.randbelow(1000) / 1000))
        while True:
            await self._send("3.key,2.65,1.1;")
            await self._send("3.key,2.65,1.0;")
            await asyncio.sleep(self.key_every)

    async def _send(self, text: str) -> None:
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(ConnectionError):
                await self.ws.send_str(text)

    async def close(self) -> None:
        self.closing = True
        if self.ws is not None:
            await self.ws.close()


class Driver:
    def __init__(self, args: argparse.Namespace, base: str, secret: str, broker_pid: int) -> None:
        self.args = args
        self.base = base
        self.secret = secret
        self.pid = broker_pid
        self.errors = Errors()
        self.http = self._client()
        # Samples go over connections of their own, closed after each answer,
        # so the driver's keep-alive connections never count in a sample.
        self.probe = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=30),
        )
        self.viewers: list[Viewer] = []
        self.viewer_tasks: list[asyncio.Task[None]] = []
        self.launches = 0
        self.disconnects = 0

    @staticmethod
    def _client() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=30)
        )

    async def drop_idle_connections(self) -> None:
        """Close the driver's keep-alive connections (the broker's idle state has none)."""
        await self.http.close()
        self.http = self._client()

    def token(self, sub: str) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": sub,
            "email": f"{sub}@example.com",
            "amr": ["pwd", "mfa"],
            "iat": now,
            "nbf": now,
            "exp": now + 24 * 3600,
        }
        return jwt.encode(claims, self.secret, algorithm="HS256")

    async def call(self, method: str, path: str, token: str, expect: tuple[int, ...]) -> Any:
        try:
            async with self.http.request(
                method, self.base + path, headers={"Authorization": f"Bearer {token}"}
            ) as r:
                body = await r.json(content_type=None)
                if r.status not in expect:
                    self.errors.add("http", f"{method} {path} -> {r.status} {body}")
                    return None
                return body
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.errors.add("http", f"{method} {path}: {type(exc).__name__}: {exc}")
            return None

    async def tasks(self) -> int:
        async with self.probe.get(self.base + "/metrics") as r:
            text = await r.text()
        match = re.search(r"^broker_asyncio_tasks (\d+)", text, re.M)
        if match is None:
            raise RuntimeError("the broker has no broker_asyncio_tasks gauge")
        return int(match.group(1))

    async def sample(self) -> Sample:
        open_viewers = sum(1 for v in self.viewers if v.ws is not None and not v.ws.closed)
        return Sample(rss_kib(self.pid), open_fds(self.pid), await self.tasks(), open_viewers)

    async def settle(self, baseline: Sample | None, limit: float = 30.0) -> Sample:
        """Sample until the counts stop moving (or match ``baseline``)."""
        deadline = time.monotonic() + limit
        last = await self.sample()
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            now = await self.sample()
            if baseline is not None and (now.fds, now.tasks) == (baseline.fds, baseline.tasks):
                return now
            if baseline is None and (now.fds, now.tasks) == (last.fds, last.tasks):
                return now
            last = now
        return last

    # -- phases ---------------------------------------------------------------------------

    async def launch_stream_sessions(self) -> list[tuple[str, str]]:
        async def one(i: int) -> tuple[str, str] | None:
            body = await self.call(
                "POST", f"/api/workspaces/ws-{i:03d}/launch", self.token(f"user{i:03d}"), (201,)
            )
            return (body["session_id"], body["viewer_token"]) if body else None

        results = await asyncio.gather(*(one(i) for i in range(self.args.workspaces)))
        sessions = [r for r in results if r is not None]
        if len(sessions) != self.args.workspaces:
            raise SystemExit(f"could not launch the sessions: {self.errors.examples}")
        return sessions

    async def warm_pool(self) -> None:
        """Concurrent reads, so the database pool has grown before the baseline."""
        token = self.token("user000")
        for _ in range(3):
            await asyncio.gather(
                *(self.call("GET", "/api/sessions/active", token, (200,)) for _ in range(30))
            )

    async def open_streams(self, sessions: list[tuple[str, str]]) -> None:
        for n in range(self.args.streams):
            session_id, token = sessions[n % len(sessions)]
            viewer = Viewer(self, session_id, token, self.args.key_every)
            self.viewers.append(viewer)
            self.viewer_tasks.append(asyncio.create_task(viewer.run()))
            if n % 20 == 19:
                await asyncio.sleep(0.2)  # a ramp, not a thundering herd
        waits = [asyncio.wait_for(v.first_sync.wait(), 60) for v in self.viewers]
        results = await asyncio.gather(*waits, return_exceptions=True)
        for viewer, result in zip(self.viewers, results, strict=True):
            if isinstance(result, BaseException):
                self.errors.add("first frame", f"{viewer.session_id}: none within 60 s")

    async def close_streams(self) -> None:
        await asyncio.gather(*(v.close() for v in self.viewers), return_exceptions=True)
        await asyncio.wait(self.viewer_tasks, timeout=30)

    async def churn(self, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            started = time.monotonic()
            j = n % self.args.churn_workspaces
            token = self.token(f"churn{j}")
            body = await self.call("POST", f"/api/workspaces/churn-{j}/launch", token, (201,))
            if body is not None:
                self.launches += 1
                viewer = Viewer(self, body["session_id"], body["viewer_token"], 3600)
                task = asyncio.create_task(viewer.run())
                try:
                    await asyncio.wait_for(viewer.first_sync.wait(), 10)
                except TimeoutError:
                    self.errors.add("churn", f"{body['session_id']}: no first frame in 10 s")
                await viewer.close()
                await asyncio.wait({task}, timeout=10)
                path = f"/api/sessions/{body['session_id']}/disconnect"
                if await self.call("POST", path, token, (200,)) is not None:
                    self.disconnects += 1
            n += 1
            with contextlib.suppress(TimeoutError):
                wait = max(0.0, self.args.churn_every - (time.monotonic() - started))
                await asyncio.wait_for(stop.wait(), wait)


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


def broker_errors(log: Path) -> list[str]:
    lines = log.read_text(errors="replace").splitlines()
    return [
        line
        for line in lines
        if line.split(" ", 3)[2:3] in (["ERROR"], ["CRITICAL"])
        or line.startswith("Traceback (most recent call last)")
    ]


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
                    __file__,
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
            env = {**os.environ, "BROKER_AUTH_HS256_SECRET": secret, "PYTHONUNBUFFERED": "1"}
            with broker_log.open("wb") as out:
                broker = subprocess.Popen(
                    [sys.executable, "-m", "broker", "serve", "--config", str(config)],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
