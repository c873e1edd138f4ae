"""The soak driver: launches the sessions, opens and closes the viewer
streams, churns launches, and samples the broker process (RSS, file
descriptors, asyncio tasks)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from broker.core.auth import mint_dev_token
from scripts.soak.viewer import Errors, Viewer

ISSUER, AUDIENCE = "connection-broker-dev", "connection-broker"


@dataclass(frozen=True)
class Sample:
    """The broker process at one moment."""

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


class Driver:
    """Drives one broker (``base``, process ``broker_pid``, HS256 ``secret``)
    with the knobs in ``args``. The caller must close `http` and `probe`."""

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
        return mint_dev_token(
            self.secret,
            issuer=ISSUER,
            audience=AUDIENCE,
            sub=sub,
            email=f"{sub}@example.com",
            ttl=24 * 3600,
        )

    def viewer(self, session_id: str, token: str, key_every: float) -> Viewer:
        return Viewer(self.http, self.base, self.errors, session_id, token, key_every)

    async def call(self, method: str, path: str, token: str, expect: tuple[int, ...]) -> Any:
        """The JSON answer, or ``None`` (and an error counted) when the status
        is not in ``expect`` or the request failed."""
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
        open_viewers = sum(1 for v in self.viewers if v.open)
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
            viewer = self.viewer(session_id, token, self.args.key_every)
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
        """Launch, watch until the first frame, close and disconnect, every
        ``--churn-every`` seconds until ``stop`` is set."""
        n = 0
        while not stop.is_set():
            started = time.monotonic()
            j = n % self.args.churn_workspaces
            token = self.token(f"churn{j}")
            body = await self.call("POST", f"/api/workspaces/churn-{j}/launch", token, (201,))
            if body is not None:
                self.launches += 1
                viewer = self.viewer(body["session_id"], body["viewer_token"], 3600)
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
