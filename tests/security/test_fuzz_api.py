"""The short schema-fuzzing run (``make fuzz`` runs the full one): a real
broker process, schemathesis-generated requests with valid and invalid
credentials, zero 5xx and zero answers the OpenAPI document does not describe.
On PostgreSQL in CI (this test is marked ``db``) the broker uses that database."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.db, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = 400


async def test_short_schema_fuzz_run_finds_nothing(database_url: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scripts.fuzz_api",
        "--requests",
        str(REQUESTS),
        "--database-url",
        database_url,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 300)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-4000:]
    summary = re.search(
        r"^fuzz: requests=(\d+) 5xx=(\d+) schema_violations=(\d+) broker_errors=(\d+)", text, re.M
    )
    assert summary is not None, text[-2000:]
    requests, server_errors, violations, errors = map(int, summary.groups())
    assert requests >= REQUESTS
    assert (server_errors, violations, errors) == (0, 0, 0)
