"""Helpers for tests that run the broker as a real process: `scripts.processes`
with the test suite's HS256 secret."""

from __future__ import annotations

import subprocess
from pathlib import Path

from scripts import processes
from scripts.processes import free_port, start_broker
from tests.conftest import TEST_SECRET

__all__ = ["free_port", "start_broker_process", "wait_ready"]


def start_broker_process(
    config: Path, port: int, cwd: Path, *, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``broker serve`` as a subprocess with the test HS256 secret (and ``env``);
    its output goes to ``cwd/broker.log``. Like `make_settings`, guacd health
    checks are off unless ``env`` turns them on (most run no guacd)."""
    return start_broker(
        config,
        secret=TEST_SECRET,
        log=cwd / "broker.log",
        port=port,
        log_level="WARNING",
        env={"BROKER_GUACD_HEALTH_CHECK_SECONDS": "0", **(env or {})},
        cwd=cwd,
    )


async def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    """Return once the broker on ``port`` answers ``/healthz`` (bounded: 30 s);
    fails when it exits first."""
    await processes.wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
