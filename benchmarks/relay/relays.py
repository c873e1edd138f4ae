"""The relays compared, each a process of its own on loopback (so its CPU and
memory are its own), and the replaying guacd they all point at.

- ``broker``: ``broker serve --config`` as a user runs it (SQLite, ``direct``
  tunnel), one workspace per session; sessions are launched through its API,
  each by its own user with its own token.
- ``lite`` / ``lite-nodelay``: guacamole-lite 1.2 from npm (``lite_launcher.js``),
  as shipped and with TCP_NODELAY on its guacd sockets; its tokens are
  AES-256-CBC encrypted JSON, one per connection.
- ``raw``: no relay; the load generator speaks guacd's protocol to it directly.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from benchmarks.relay.client import Clients, Stream, TcpStream, WebSocketStream
from benchmarks.relay.procstat import pin
from broker.core.auth import mint_dev_token
from scripts.processes import ROOT, free_port, start_broker, stop_process, wait_ready

HERE = Path(__file__).resolve().parent
SECRET = "relay-benchmark-secret-0123456789abcdef"
ISSUER = AUDIENCE = "bench-relay"
LITE_KEY = "relay-bench-lite-key-0123456789a"  # 32 bytes: AES-256
RELAY_CPU, LOAD_CPU = 0, 1


def spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` in the repository, its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


async def wait_port(port: int, process: subprocess.Popen[bytes], limit: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"port {port} did not open within {limit:g} s")


class Guacd:
    """The simulated guacd replaying the VNC capture (``--echo-mouse``), paced
    or at full speed: two processes, both on the load generator's CPU."""

    def __init__(self, folder: Path, pinned: bool) -> None:
        self.folder, self.pinned = folder, pinned
        self.full_port, self.paced_port = free_port(), free_port()
        self.processes: list[subprocess.Popen[bytes]] = []

    def command(self, port: int, paced: bool) -> list[str]:
        return [
            sys.executable,
            "-m",
            "protocols.simulated.guacd",
            *("--port", str(port), "--mode", "replay", "--echo-mouse"),
            *("--max-connections", "4000", "--client-timeout", "120"),
            *(["--pace"] if paced else []),
        ]

    async def start(self) -> None:
        for port, paced in ((self.full_port, False), (self.paced_port, True)):
            process = spawn(self.command(port, paced), self.folder / f"guacd-{port}.log")
            self.processes.append(process)
            if self.pinned:
                pin(process.pid, LOAD_CPU)
        for port, process in zip((self.full_port, self.paced_port), self.processes, strict=True):
            await wait_port(port, process)

    def port(self, paced: bool) -> int:
        return self.paced_port if paced else self.full_port

    def pid(self, paced: bool) -> int:
        return self.processes[1 if paced else 0].pid

    def stop(self) -> None:
        for process in self.processes:
            stop_process(process, 5)


class Relay:
    """One relay under test: one process per guacd (full speed, paced), since
    a relay's guacd is its own setting, not a connection's. Only the one in
    use is measured; the other idles on the same CPU."""

    name = ""

    def __init__(self, guacd: Guacd, folder: Path, pinned: bool) -> None:
        self.guacd, self.folder, self.pinned = guacd, folder, pinned
        self.processes: dict[bool, subprocess.Popen[bytes]] = {}
        self.ports = {False: free_port(), True: free_port()}
        self.paced = True

    def use(self, paced: bool) -> None:
        """Measure the process whose guacd replays paced (or at full speed)."""
        self.paced = paced

    @property
    def pid(self) -> int | None:
        process = self.processes.get(self.paced)
        return process.pid if process is not None else None

    def command_line(self) -> str:
        process = self.processes.get(True)
        if process is None or not isinstance(process.args, list):
            return "(none)"
        return shlex.join(str(a) for a in process.args)

    async def start(self) -> None:
        """Start the processes and wait until they serve."""

    async def prepare(self, http: Clients, count: int) -> None:
        """Make sure ``count`` streams can be opened (sessions launched...)."""

    def streams(self, http: Clients, count: int) -> list[Stream]:
        raise NotImplementedError

    def stop(self) -> None:
        for process in self.processes.values():
            stop_process(process, 10)


class Raw(Relay):
    name = "raw TCP (no relay)"

    def streams(self, http: Clients, count: int) -> list[Stream]:
        port = self.guacd.port(self.paced)
        return [TcpStream("127.0.0.1", port) for _ in range(count)]


def _broker_config(folder: Path, guacd_port: int, workspaces: int) -> str:
    lines = [
        "[server]",
        f'data_dir = "{folder}"',
        "[auth]",
        f'issuer = "{ISSUER}"',
        f'audience = "{AUDIENCE}"',
        "[guacd]",
        f'endpoints = ["127.0.0.1:{guacd_port}"]',
        "[ratelimit]",
        "enabled = false  # the benchmark launches hundreds of sessions a minute",
    ]
    for i in range(workspaces):
        lines += ["[[workspaces]]", f'id = "w{i}"', f'name = "Bench {i}"', 'type = "vnc"']
    return "\n".join(lines) + "\n"


class BrokerRelay(Relay):
    """``broker serve --config`` (SQLite, ``direct`` tunnel), one workspace per
    session; sessions are launched through its API, each by its own user."""

    name = "broker"

    def __init__(self, guacd: Guacd, folder: Path, pinned: bool, workspaces: int) -> None:
        super().__init__(guacd, folder, pinned)
        self.workspaces = workspaces
        self.sessions: dict[bool, list[tuple[str, str]]] = {False: [], True: []}
        self.launched = {False: 0, True: 0}
        self.retried = 0  # launches answered 503 and tried again

    def _folder(self, paced: bool) -> Path:
        return self.folder / ("broker-paced" if paced else "broker-full")

    async def start(self) -> None:
        for paced in (False, True):
            folder = self._folder(paced)
            folder.mkdir(parents=True, exist_ok=True)
            config = folder / "broker.toml"
            config.write_text(_broker_config(folder, self.guacd.port(paced), self.workspaces))
            process = start_broker(
                config,
                secret=SECRET,
                log=folder / "broker.log",
                port=self.ports[paced],
                log_level="WARNING",
            )
            self.processes[paced] = process
            if self.pinned:
                pin(process.pid, RELAY_CPU)
        for paced, process in self.processes.items():
            url = f"http://127.0.0.1:{self.ports[paced]}/healthz"
            await wait_ready(url, process, log=self._folder(paced) / "broker.log", limit=60)
            if self.pinned:
                pin(process.pid, RELAY_CPU)  # threads started since

    async def prepare(self, http: Clients, count: int) -> None:
        sessions = self.sessions[self.paced]
        sessions.extend(await self.launch(http, count - len(sessions)))

    async def launch(self, http: Clients, count: int) -> list[tuple[str, str]]:
        """Launch ``count`` sessions through the API of the process in use, each
        by its own user on its own workspace, 8 at a time: (id, viewer token).
        A 503 (the broker says to try again shortly) is retried after 0.2 s, at
        most 50 times, and counted in `retried`."""
        base = f"http://127.0.0.1:{self.ports[self.paced]}"
        gate = asyncio.Semaphore(8)

        async def one(i: int) -> tuple[str, str]:
            token = mint_dev_token(
                SECRET, issuer=ISSUER, audience=AUDIENCE, sub=f"user{i}", email=f"u{i}@b.x"
            )
            headers = {"Authorization": f"Bearer {token}"}
            url = f"{base}/api/workspaces/w{i}/launch"
            async with gate:
                for _ in range(50):
                    async with http.api.post(url, headers=headers) as r:
                        body = await r.json()
                        if r.status in (200, 201):
                            return str(body["session_id"]), str(body["viewer_token"])
                        if r.status != 503:
                            break
                    self.retried += 1
                    await asyncio.sleep(0.2)
            raise RuntimeError(f"launch w{i}: {r.status} {body}")

        count = max(0, count)
        first = self.launched[self.paced]
        if first + count > self.workspaces:
            raise RuntimeError(f"{first + count} sessions needed, {self.workspaces} workspaces")
        self.launched[self.paced] += count
        return list(await asyncio.gather(*(one(first + k) for k in range(count))))

    def streams(self, http: Clients, count: int) -> list[Stream]:
        sessions = self.sessions[self.paced]
        if len(sessions) < count:
            raise RuntimeError(f"{len(sessions)} sessions launched, {count} needed")
        return self.viewers(http, sessions[:count])

    def viewers(self, http: Clients, sessions: list[tuple[str, str]]) -> list[Stream]:
        port = self.ports[self.paced]
        return [
            WebSocketStream(
                http.next(),
                f"ws://127.0.0.1:{port}/viewer/{sid}/websocket-tunnel"
                f"?token={token}&GUAC_WIDTH=1024&GUAC_HEIGHT=768",
            )
            for sid, token in sessions
        ]


class Lite(Relay):
    """guacamole-lite 1.2 (``lite_launcher.js``); a fresh token per connection."""

    def __init__(self, guacd: Guacd, folder: Path, pinned: bool, nodelay: bool) -> None:
        super().__init__(guacd, folder, pinned)
        self.nodelay = nodelay
        self.name = "lite + TCP_NODELAY" if nodelay else "guacamole-lite 1.2"

    async def start(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not installed (make system-deps)")
        if not (ROOT / "node_modules" / "guacamole-lite").is_dir():
            raise RuntimeError("guacamole-lite is not installed (make install)")
        for paced in (False, True):
            command = [
                node,
                str(HERE / "lite_launcher.js"),
                *("--port", str(self.ports[paced])),
                *("--guacd-port", str(self.guacd.port(paced))),
                *("--key", LITE_KEY),
                *(["--nodelay"] if self.nodelay else []),
            ]
            process = spawn(command, self.folder / f"lite-{self.ports[paced]}.log")
            self.processes[paced] = process
            if self.pinned:
                pin(process.pid, RELAY_CPU)
        for paced, process in self.processes.items():
            await wait_port(self.ports[paced], process)
            if self.pinned:
                pin(process.pid, RELAY_CPU)

    def streams(self, http: Clients, count: int) -> list[Stream]:
        port = self.ports[self.paced]
        return [
            WebSocketStream(
                http.next(), f"ws://127.0.0.1:{port}/?token={quote(lite_token(), safe='')}"
            )
            for _ in range(count)
        ]


def lite_token() -> str:
    """A guacamole-lite token: AES-256-CBC of the connection's JSON, with its
    IV, as base64 JSON (its README's format)."""
    settings = {
        "connection": {
            "type": "vnc",
            "settings": {"hostname": "127.0.0.1", "port": "5900", "width": 1024, "height": 768},
        }
    }
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    plain = padder.update(json.dumps(settings).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(LITE_KEY.encode()), modes.CBC(iv)).encryptor()
    value = encryptor.update(plain) + encryptor.finalize()
    wrapped = {"iv": base64.b64encode(iv).decode(), "value": base64.b64encode(value).decode()}
    return base64.b64encode(json.dumps(wrapped).encode()).decode()


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="relay-bench-"))
