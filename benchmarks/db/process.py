"""The broker under test, as a process of its own on a loopback port, so its
CPU time is its own (`benchmarks.db.serve` counts its SQL)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.relay.procstat import cpu_seconds
from broker.core.auth import mint_dev_token
from scripts.processes import ROOT, free_port, log_tail, stop_process, wait_ready

SECRET = "db-benchmark-secret-0123456789abcdef"
ISSUER = AUDIENCE = "bench-db"
WORKSPACE = "bench"  # the one workspace launched (configured; the seeded ones are not)
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def token(sub: str, *, admin: bool = False) -> str:
    return mint_dev_token(
        SECRET,
        issuer=ISSUER,
        audience=AUDIENCE,
        sub=sub,
        email=f"{sub}@example.com",
        roles=["admin"] if admin else [],
        ttl=24 * 3600,
    )


YEAR = 365 * 86400


def config(folder: Path, url: str) -> str:
    """The broker's settings: every limit on (so the reaper asks its whole
    question each pass) but a year long, so no seeded session (the oldest
    started 85 days ago) is ended while measured; rate limits off (the
    benchmark launches 200 times a minute); no guacd checks."""
    return textwrap.dedent(f"""
        [server]
        data_dir = "{folder}"
        [database]
        url = "{url}"
        auto_migrate = true
        [auth]
        issuer = "{ISSUER}"
        audience = "{AUDIENCE}"
        [guacd]
        health_check_seconds = 0
        [ratelimit]
        enabled = false
        [limits]
        max_session_seconds = {YEAR}
        idle_no_viewer_seconds = {YEAR}
        idle_no_input_seconds = {YEAR}
        [[workspaces]]
        id = "{WORKSPACE}"
        name = "Bench"
        type = "linux"
        """)


@dataclass(frozen=True)
class Counts:
    """What the broker's SQL hook saw up to one moment."""

    seq: int
    vm_steps_k: int
    seen: dict[str, dict[str, Any]]

    def by(self, statement: str, who: str) -> int:
        entry = self.seen.get(statement)
        return int(entry["by"].get(who, 0)) if entry else 0

    def since(self, before: Counts) -> dict[str, dict[str, int]]:
        """Who ran which statements how often between ``before`` and this:
        ``request`` (the HTTP handlers) or a background task's name.
        Transaction control is left out."""
        out: dict[str, dict[str, int]] = {}
        for statement, entry in self.seen.items():
            if statement.lstrip().upper().startswith(TRANSACTION_CONTROL):
                continue
            for who, count in entry["by"].items():
                grown = int(count) - before.by(statement, who)
                if grown:
                    out.setdefault(who, {})[statement] = grown
        return out

    def params(self, statement: str) -> Any:
        return self.seen[statement]["params"]


class CountedBroker:
    """Start with `start`; end with `stop` (also on failure paths)."""

    def __init__(self, folder: Path, url: str) -> None:
        self.folder = folder
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = folder / "broker.log"
        self._counts = folder / "sql-counts.json"
        self._config = folder / "broker.toml"
        self._config.write_text(config(folder, url))
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        process = self._spawn()
        await wait_ready(self.base + "/healthz", process, log=self.log, limit=120)

    def _spawn(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "benchmarks.db.serve", str(self._counts)]
        command += ["--config", str(self._config), "--port", str(self.port)]
        command += ["--log-level", "WARNING"]
        env = {"BROKER_AUTH_HS256_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as out:
            self._process = subprocess.Popen(
                command, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
            )
        return self._process

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    async def counts(self) -> Counts:
        """Ask the broker for its counts (SIGUSR1) and wait for them."""
        before = self._read_seq()
        assert self._process is not None
        self._process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            data = self._read()
            if data is not None and data["seq"] > before:
                return Counts(data["seq"], data["vm_steps_k"], data["seen"])
            await asyncio.sleep(0.01)
        raise RuntimeError(f"the broker wrote no counts:\n{log_tail(self.log)}")

    def _read(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self._counts.read_text())
        except (OSError, ValueError):
            return None
        return data

    def _read_seq(self) -> int:
        data = self._read()
        return int(data["seq"]) if data else 0

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process, 30)
