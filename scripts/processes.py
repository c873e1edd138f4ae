"""The broker and its simulated peers as real processes on loopback, for the
scripts (chaos, fuzz, soak), the benchmarks and the tests that run them.

Everything here is bounded: every wait has a limit and raises
`ProcessFailed` (with the tail of the process's log) when the process exits
early or does not come up in time. The caller owns each process it starts and
must end it with `stop_process` (also on failure paths).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]


class ProcessFailed(RuntimeError):
    """A process exited early or did not become ready in time."""


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the caller binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def log_tail(log: Path | None, chars: int = 3000) -> str:
    """The end of ``log`` (empty when there is none), for error messages."""
    if log is None or not log.exists():
        return ""
    return log.read_text(errors="replace")[-chars:]


def start_broker(
    config: Path,
    *,
    secret: str,
    log: Path | None,
    port: int | None = None,
    log_level: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
) -> subprocess.Popen[bytes]:
    """``python -m broker serve --config config`` with ``secret`` as its HS256
    secret and ``env`` on top of this process's environment.

    Its output (stdout and stderr) is appended to ``log`` (``None``: discarded).
    ``port`` and ``log_level`` override the config's. Returns at once: await
    `wait_ready` before sending requests.
    """
    command = [sys.executable, "-m", "broker", "serve", "--config", str(config)]
    if port is not None:
        command += ["--port", str(port)]
    if log_level is not None:
        command += ["--log-level", log_level]
    full_env = {
        **os.environ,
        "BROKER_AUTH_HS256_SECRET": secret,
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    if log is None:
        return subprocess.Popen(
            command, cwd=cwd, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    with log.open("ab") as out:
        return subprocess.Popen(
            command, cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT
        )


async def wait_ready(
    url: str, process: subprocess.Popen[bytes], *, log: Path | None = None, limit: float = 30.0
) -> None:
    """Return once ``url`` (e.g. the broker's ``/healthz``) answers 200.

    Raises `ProcessFailed` when ``process`` exits first or ``limit`` seconds
    pass."""
    deadline = time.monotonic() + limit
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ProcessFailed(f"exited with {process.returncode}:\n{log_tail(log)}")
            try:
                async with http.get(url) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
    raise ProcessFailed(f"{url} did not answer within {limit:g} s:\n{log_tail(log)}")


def wait_for_line(process: subprocess.Popen[bytes], log: Path, text: str, limit: float) -> None:
    """Return once ``text`` appears in ``log`` (where ``process`` writes).

    Raises `ProcessFailed` when ``process`` exits first or ``limit`` seconds pass."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ProcessFailed(f"exited with {process.returncode}:\n{log_tail(log)}")
        if text in log.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise ProcessFailed(f"no {text!r} within {limit:g} s:\n{log_tail(log)}")


def stop_process(process: subprocess.Popen[bytes], limit: float = 20.0) -> None:
    """SIGTERM (the broker drains), then SIGKILL after ``limit`` seconds; waits
    for the exit either way. Does nothing if the process has exited."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(limit)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def broker_errors(log: Path) -> list[str]:
    """The ERROR and CRITICAL records and tracebacks in a broker's log."""
    lines = log.read_text(errors="replace").splitlines()
    # Records are "<date> <time> LEVEL logger: message" (broker.web.logs).
    return [
        line
        for line in lines
        if line.split(" ", 3)[2:3] in (["ERROR"], ["CRITICAL"])
        or line.startswith("Traceback (most recent call last)")
    ]
