"""The short chaos run in `make test` (the full one is `make chaos`): a real broker
killed with SIGKILL at random moments under load, then every invariant of
RELIABILITY.md checked by ``python -m scripts.chaos``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def run_chaos(kills: int, database_url: str = "") -> dict[str, object]:
    cmd = [sys.executable, "-m", "scripts.chaos", "--kills", str(kills), "--seed", "7"]
    if database_url:
        cmd += ["--database-url", database_url]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(summary, dict)
    return summary


def test_chaos_short_run_keeps_every_invariant():
    summary = run_chaos(6)
    assert summary["violations"] == 0
    assert summary["kills"] == 6
    assert summary["acknowledged_launches"] > 0 and summary["acknowledged_ends"] > 0


@pytest.mark.db
async def test_chaos_short_run_on_the_configured_database(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("the SQLite run is the test above")
    summary = await asyncio.to_thread(run_chaos, 4, database_url)
    assert summary["violations"] == 0
