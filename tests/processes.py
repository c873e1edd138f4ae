"""Helpers for tests and scripts (chaos, soak, fuzz, benchmarks) that run the
broker or its simulated peers as real processes."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import requests

from tests.conftest import TEST_SECRET


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the caller binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_broker_process(
    config: Path, port: int, cwd: Path, *, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``broker serve`` as a subprocess with the test HS256 secret (and ``env``);
    its log goes to ``cwd/broker.log``."""
    env = {**os.environ, "BROKER_AUTH_HS256_SECRET": TEST_SECRET, **(env or {})}
    with (cwd / "broker.log").open("ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "broker",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
                "--log-level",
                "WARNING",
            ],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


async def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    """Return once the broker answers ``/healthz`` (bounded: 30 s)."""

    async def run() -> None:
        while True:
            assert proc.poll() is None, "the broker exited; see broker.log"
            try:
                r = await asyncio.to_thread(
                    requests.get, f"http://127.0.0.1:{port}/healthz", timeout=1
                )
                if r.status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            await asyncio.sleep(0.05)

    await asyncio.wait_for(run(), 30)
