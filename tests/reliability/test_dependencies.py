"""Dependency failures: the database down or locked, guacd down or hanging.
Each gives a clear answer in bounded time and recovers without a restart."""

from __future__ import annotations

import asyncio
import sqlite3
from urllib.parse import urlsplit, urlunsplit

import pytest

from protocols.simulated.guacd import SimulatedGuacd, SimulatedGuacdOptions
from tests.broker.apiclient import Api
from tests.broker.viewer_support import WORKSPACES, finish, open_tunnel, read_until
from tests.conftest import PG_URL


class TcpProxy:
    """A loopback TCP forwarder that can be cut (every connection dropped, new
    ones refused) and restored: a dependency going away and coming back."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in self._writers:
            w.transport.abort()
        self._writers.clear()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def restore(self) -> None:
        await self.start()


async def test_locked_sqlite_is_503_then_recovers(start_broker, make_settings, tmp_path, token):
    settings = make_settings(env={"BROKER_DATABASE_BUSY_TIMEOUT_MS": "300"})
    if not settings.is_sqlite:
        pytest.skip("SQLite locking; PostgreSQL has its own test below")
    api = Api(await start_broker(settings))
    t = token()
    assert (await api.get("/api/sessions", t)).status == 200
    path = settings.database_url.split("///", 1)[1]
    # Another process-like holder of the write lock; taken off the event loop,
    # which the broker under test shares.
    lock = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    try:
        await asyncio.to_thread(lock.execute, "BEGIN EXCLUSIVE")
        r = await api.get("/api/sessions", t, validate=False)
        assert r.status == 503 and "Database unavailable" in r.body["detail"]
        assert r.headers["Retry-After"]
        r = await api.launch("ws-linux-desktop", t)
        assert r.status == 503
        ready = await api.client.get("/readyz")
        assert ready.status == 503 and (await ready.json())["checks"]["database"]["ok"] is False
    finally:
        if lock.in_transaction:
            lock.execute("ROLLBACK")
        lock.close()
    assert (await api.get("/api/sessions", t)).body == []  # the refused launch left nothing
    assert (await api.launch("ws-linux-desktop", t)).status == 201


@pytest.mark.db
async def test_postgres_going_away_is_503_then_recovers(
    start_broker, make_settings, database_url, token
):
    if not database_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL (the CI database run)")
    parts = urlsplit(PG_URL)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    netloc = (
        f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
    )
    via_proxy = urlunsplit(parts._replace(netloc=netloc))
    settings = make_settings(
        env={"BROKER_DATABASE_URL": via_proxy, "BROKER_DATABASE_STATEMENT_TIMEOUT_SECONDS": "2"}
    )
    try:
        api = Api(await start_broker(settings))
        t = token()
        assert (await api.launch("ws-linux-desktop", t)).status == 201
        await proxy.cut()
        r = await asyncio.wait_for(api.get("/api/sessions", t, validate=False), 30)
        assert r.status == 503 and "Database unavailable" in r.body["detail"]
        await proxy.restore()
        r = await api.get("/api/sessions/active", t)
        assert r.status == 200 and len(r.body) == 1
    finally:
        await proxy.cut()


async def test_guacd_down_then_back(start_broker, make_settings, token):
    guacd = SimulatedGuacd(SimulatedGuacdOptions(first_frame_delay=0.0))
    await guacd.start(host="127.0.0.1", port=0)
    port = guacd.port
    settings = make_settings(
        workspaces=WORKSPACES, env={"BROKER_GUACD_ENDPOINTS": f"127.0.0.1:{port}"}
    )
    api = Api(await start_broker(settings))
    launched = (await api.launch("ws-vnc", token())).body
    await guacd.aclose()
    ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
    _, code, reason = await finish(ws)
    assert (code, reason) == (1011, "519")
    # guacd comes back on its address: the same session works, no restart.
    guacd = SimulatedGuacd(SimulatedGuacdOptions(first_frame_delay=0.0))
    await guacd.start(host="127.0.0.1", port=port)
    try:
        ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
        await read_until(ws, lambda f: "4.sync," in f)
        await ws.close()
    finally:
        await guacd.aclose()


async def test_hanging_guacd_times_out(start_broker, make_settings, token):
    silent: list[asyncio.StreamWriter] = []

    async def accept_and_say_nothing(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        silent.append(w)

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = make_settings(
        workspaces=WORKSPACES,
        env={
            "BROKER_GUACD_ENDPOINTS": f"127.0.0.1:{port}",
            "BROKER_GUACD_REPLY_TIMEOUT_SECONDS": "0.5",
        },
    )
    try:
        api = Api(await start_broker(settings))
        launched = (await api.launch("ws-vnc", token())).body
        ws = await open_tunnel(api, launched["session_id"], launched["viewer_token"])
        frames, code, reason = await finish(ws)
        assert (code, reason) == (1011, "514")
        assert "did not answer" in frames[-1]
    finally:
        for w in silent:
            w.close()
        server.close()
        await server.wait_closed()
