"""``make bench-db`` in miniature: the benchmark runs end to end on a small
SQLite database and prints its table, idle figures and plans. It checks
that the benchmark works, not any number it prints. Marked slow: two broker
processes and the benchmark's own take over 10 s on a busy machine."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


async def test_the_database_benchmark_runs_and_prints_its_table() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.db",
        *("--db", "sqlite", "--rows", "300", "--requests", "3"),
        *("--idle-seconds", "0.5", "--settle", "0"),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    text = out.decode()
    assert process.returncode == 0, err.decode()[-4000:]
    rows = {line[:40].strip() for line in text.splitlines()}
    for route in (
        "POST launch",
        "GET /api/sessions?before= (deep)",
        "?user=<email>",
        "GET /metrics",
    ):
        assert route in rows, text
    # Every route has its row (the sessions' and the audit's user= filters both).
    assert sum(line.startswith("  ?user=<id> ") for line in text.splitlines()) == 2, text
    assert "CPU, % of one core" in text and "SQL statements / min" in text
    # The plans of what the broker ran at N, per route.
    assert "== sqlite: plans at N = 300 ==" in text
    assert "-- GET /api/admin/sessions" in text and "statements scan a table" in text
