"""``broker serve --workers 2``: two real processes on one port, on a real
PostgreSQL database, serving as one broker: requests reach both, a session
ended through one closes the viewer held by the other, ``/metrics`` and the
rate limits count for the host, the reaper ends a due session once, a
crashed worker is replaced, and SIGTERM drains both and exits 0. On SQLite
``--workers`` is refused.

Which worker holds a connection is read from the kernel (/proc: the
listening port's established sockets and the processes holding them)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.conftest import TEST_SECRET
from tests.processes import free_port, start_broker_process
from tests.scrape import samples, value

pytestmark = pytest.mark.db

WORKERS = 2
WORKSPACES = """
[[workspaces]]
id = "ws-a"
name = "A"
type = "vnc"

[[workspaces]]
id = "ws-b"
name = "B"
type = "vnc"
"""


# -- which process holds a connection (Linux /proc) ---------------------------


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(p) for p in (task / "children").read_text().split()}
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def holders(port: int, pids: set[int]) -> dict[int, int]:
    """The client port of each established connection to ``port``, and the
    pid (among ``pids``) holding its server side."""
    by_inode = {inode: pid for pid in pids for inode in _socket_inodes(pid)}
    found = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if state == "01" and int(local.split(":")[1], 16) == port and inode in by_inode:
            found[int(remote.split(":")[1], 16)] = by_inode[inode]
    return found


# -- the service ----------------------------------------------------------------


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> set[int]:
        return children(self.proc.pid)

    async def wait_workers(self, count: int = WORKERS) -> set[int]:
        """The workers, once ``count`` of them answer (the supervisor announces
        after the last one listens)."""
        deadline = time.monotonic() + 60
        while "(2 workers)" not in self.log.read_text(errors="replace"):
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the workers did not start"
            await asyncio.sleep(0.05)
        pids = self.workers()
        assert len(pids) == count
        return pids

    async def holder(self, client_port: int) -> int:
        """The worker holding the connection from ``client_port`` (once one
        has accepted it: until then it waits in the kernel's queue)."""
        deadline = time.monotonic() + 10
        while (pid := holders(self.port, self.workers()).get(client_port)) is None:
            assert time.monotonic() < deadline, f"no worker accepted {client_port}"
            await asyncio.sleep(0.01)
        return pid


def skip_unless_postgres(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("--workers needs PostgreSQL")


@pytest.fixture
async def service(
    tmp_path: Path, write_config: Callable[..., Path], database_url: str, guacd
) -> AsyncIterator[Callable[..., object]]:
    """Start ``broker serve --workers 2`` (the config's [server] plus ``extra``
    TOML, ``env`` on top); every process is gone after the test."""
    started: list[subprocess.Popen[bytes]] = []

    async def start(extra: str = "", env: dict[str, str] | None = None) -> Service:
        skip_unless_postgres(database_url)
        config = write_config(extra, workspaces=WORKSPACES)
        port = free_port()
        proc = start_broker_process(
            config,
            port,
            tmp_path,
            env={
                "BROKER_GUACD_ENDPOINTS": f"127.0.0.1:{guacd.port}",
                "BROKER_SERVER_WORKERS": str(WORKERS),
                **(env or {}),
            },
        )
        started.append(proc)
        return Service(proc, port, tmp_path / "broker.log")

    yield start
    for proc in started:
        workers = children_or_none(proc.pid)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def children_or_none(pid: int) -> set[int]:
    try:
        return children(pid)
    except OSError:
        return set()


async def new_connections(
    service: Service, count: int
) -> tuple[list[aiohttp.ClientSession], dict[int, int]]:
    """``count`` sessions, each with its own open connection (after one
    ``/healthz``), and the worker holding each connection by client port."""
    sessions = []
    for _ in range(count):
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
        async with http.get(f"{service.base}/healthz") as r:
            assert r.status == 200
        sessions.append(http)
    return sessions, holders(service.port, service.workers())


async def through(service: Service, worker: int, method: str, path: str, token: str) -> int:
    """``method path`` on a connection held by ``worker`` (new connections
    until the kernel gives one to it)."""
    for _ in range(200):
        reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
        try:
            port = writer.get_extra_info("sockname")[1]
            if await service.holder(port) != worker:
                continue
            writer.write(
                f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{service.port}\r\n"
                f"Authorization: Bearer {token}\r\nContent-Length: 0\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
            await asyncio.wait_for(reader.read(), 10)
            return int(head.split()[1])
        finally:
            writer.close()
    raise AssertionError(f"no connection reached worker {worker}")


async def launch(http: aiohttp.ClientSession, base: str, token: str, ws: str) -> dict:
    async with http.post(
        f"{base}/api/workspaces/{ws}/launch", headers={"Authorization": f"Bearer {token}"}
    ) as r:
        assert r.status == 201, await r.text()
        return dict(await r.json())


async def viewer(
    http: aiohttp.ClientSession, base: str, launched: dict
) -> aiohttp.ClientWebSocketResponse:
    url = (
        f"{base}/viewer/{launched['session_id']}/websocket-tunnel?token={launched['viewer_token']}"
    )
    ws = await http.ws_connect(url, protocols=("guacamole",))
    while "4.sync," not in await ws.receive_str(timeout=10):
        pass
    return ws


async def close_of(ws: aiohttp.ClientWebSocketResponse, limit: float = 15) -> tuple[int, str]:
    async def wait() -> tuple[int, str]:
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.CLOSE:
                return int(msg.data), str(msg.extra)
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return ws.close_code or 0, ""

    return await asyncio.wait_for(wait(), limit)


async def scrape(base: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as r:
        assert r.status == 200
        return await r.text()


# -- the tests --------------------------------------------------------------------


async def test_two_workers_share_the_port_and_count_as_one(service, token) -> None:
    svc: Service = await service()
    pids = await svc.wait_workers()
    sessions, held = await new_connections(svc, 40)
    try:
        assert set(held.values()) == pids  # both workers hold some of the 40
        per_worker = {pid: list(held.values()).count(pid) for pid in pids}
        text = await scrape(svc.base)
        # Every /healthz counted, whichever worker answered it and whichever answers now.
        healthz = value(
            text,
            "broker_http_request_duration_seconds_count",
            method="GET",
            route="/healthz",
            status="2xx",
        )
        assert healthz == 40, per_worker
        # Database values once, not once per worker.
        assert value(text, "broker_sessions", status="active") == 0
        assert value(text, "broker_up") == 1
        assert len(samples(text, "broker_event_bus_listening")) == 1
    finally:
        for http in sessions:
            await http.close()
    assert svc.workers() == pids


async def test_an_end_through_one_worker_closes_the_viewer_on_the_other(service, token) -> None:
    svc: Service = await service("\n[limits]\nreaper_interval_seconds = 3600\n")
    await svc.wait_workers()
    t = token()
    async with aiohttp.ClientSession() as http:
        launched = await launch(http, svc.base, t, "ws-a")
        ws = await viewer(http, svc.base, launched)
        held_by = await svc.holder(ws.get_extra_info("sockname")[1])
        (other,) = svc.workers() - {held_by}
        status = await through(svc, other, "POST", "/api/workspaces/ws-a/stop", t)
        assert status == 200
        assert await close_of(ws) == (1002, "523")  # SESSION_CLOSED, at once (no sweep)


async def test_a_rate_limit_holds_for_the_host(service) -> None:
    burst = 6
    svc: Service = await service(
        f"\n[ratelimit]\nip_auth_failure_burst = {burst}\nip_auth_failures_per_minute = 0.001\n"
    )
    pids = sorted(await svc.wait_workers())
    # Half the sign-in failures through each worker, in turn.
    statuses = [
        await through(svc, pids[i % WORKERS], "GET", "/api/sessions", "not-a-token")
        for i in range(24)
    ]
    refused = statuses.count(429)
    # One budget for the host: at most one more failure per worker (each
    # learns of the spent budget at its own next spend), never a budget each.
    assert burst <= statuses.count(401) <= burst + WORKERS, statuses
    assert refused == 24 - statuses.count(401)
    text = await scrape(svc.base)
    assert value(text, "broker_edge_refusals_total", reason="ip_auth_failures") == refused


async def test_the_reaper_ends_a_due_session_once(service, token, database_url) -> None:
    svc: Service = await service(
        "\n[limits]\nreaper_interval_seconds = 0.2\nmax_session_seconds = 1\n"
    )
    await svc.wait_workers()
    async with aiohttp.ClientSession() as http:
        launched = await launch(http, svc.base, token(), "ws-a")
        headers = {"Authorization": f"Bearer {token()}"}
        deadline = time.monotonic() + 20
        while True:
            async with http.get(
                f"{svc.base}/api/sessions/{launched['session_id']}", headers=headers
            ) as r:
                if (await r.json())["status"] != "active":
                    break
            assert time.monotonic() < deadline, "the reaper did not end the session"
            await asyncio.sleep(0.05)
        # A few more passes of both workers' reapers.
        for _ in range(3):
            await asyncio.sleep(0.2)
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        ends = await conn.fetch(
            "SELECT action, details FROM audit_events WHERE session_id = $1"
            " AND action IN ('end_session', 'disconnect_session')",
            launched["session_id"],
        )
    finally:
        await conn.close()
    assert len(ends) == 1, ends
    text = await scrape(svc.base)
    assert (
        value(text, "broker_sessions_ended_total", reason="max_duration", status="disconnected")
        == 1
    )


async def test_a_crashed_worker_is_replaced(service) -> None:
    svc: Service = await service()
    pids = await svc.wait_workers()
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while len(now := svc.workers() - {victim}) < WORKERS or victim in svc.workers():
        assert time.monotonic() < deadline, "no worker took its place"
        assert svc.proc.poll() is None
        await asyncio.sleep(0.05)
    (replacement,) = now - pids
    # It serves once it listens: new connections reach it.
    deadline = time.monotonic() + 60
    while True:
        sessions, held = await new_connections(svc, 10)
        for http in sessions:
            await http.close()
        if replacement in held.values():
            break
        assert time.monotonic() < deadline, "the new worker did not listen"
    assert svc.proc.poll() is None


async def test_sigterm_drains_every_worker_then_exits_0(service, token) -> None:
    svc: Service = await service(env={"BROKER_SERVER_DRAIN_GRACE_SECONDS": "1"})
    pids = await svc.wait_workers()
    t = token()
    async with aiohttp.ClientSession() as http:
        # A viewer on each worker (sessions of two workspaces, viewers opened
        # until both workers hold one).
        viewers = {}
        for ws_id in ("ws-a", "ws-b"):
            launched = await launch(http, svc.base, t, ws_id)
            for _ in range(50):
                ws = await viewer(http, svc.base, launched)
                pid = await svc.holder(ws.get_extra_info("sockname")[1])
                if pid not in viewers:
                    viewers[pid] = ws
                    break
                await ws.close()
        assert set(viewers) == pids
        svc.proc.send_signal(signal.SIGTERM)
        for ws in viewers.values():
            assert await close_of(ws, 30) == (1008, "513")  # SERVER_BUSY: reconnect elsewhere
    assert await asyncio.to_thread(svc.proc.wait, 30) == 0
    assert not any(alive(pid) for pid in pids)


async def test_workers_drain_and_exit_when_the_supervisor_is_killed(service) -> None:
    svc: Service = await service()
    pids = await svc.wait_workers()
    svc.proc.kill()  # SIGKILL: nothing passes a signal on
    svc.proc.wait()
    deadline = time.monotonic() + 40
    while any(alive(pid) and not zombie(pid) for pid in pids):
        assert time.monotonic() < deadline, "workers outlived their supervisor"
        await asyncio.sleep(0.05)


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return True


def test_workers_are_refused_on_sqlite(tmp_path: Path) -> None:
    config = tmp_path / "broker.toml"
    config.write_text(
        f'[server]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "b.db"}"\n'
        '[auth]\nissuer = "i"\naudience = "a"\n' + WORKSPACES
    )
    done = subprocess.run(
        [sys.executable, "-m", "broker", "serve", "--config", str(config), "--workers", "2"],
        env={**os.environ, "BROKER_AUTH_HS256_SECRET": TEST_SECRET},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--workers 2 needs PostgreSQL, and database.url is SQLite" in done.stderr
    assert "listening" not in done.stdout
