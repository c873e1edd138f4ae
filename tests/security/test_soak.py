"""The short soak (``make soak`` runs 200 streams for 10 minutes): the script
with small knobs, as real processes, must pass its own checks: no errors,
RSS steady after the warm-up, file descriptors and asyncio tasks back to the
idle baseline once the streams end."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


async def test_short_soak_passes() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scripts.soak",
        *("--streams", "20", "--seconds", "20", "--warmup", "5", "--report-every", "10"),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 240)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-4000:]
    (line,) = [x for x in text.splitlines() if x.startswith("summary: ")]
    summary = json.loads(line.removeprefix("summary: "))
    assert summary["pass"] and summary["errors"] == 0
    assert summary["streams"] == 20 and summary["churn_launches"] >= 10
    assert summary["fds"][0] == summary["fds"][3] and summary["tasks"][0] == summary["tasks"][3]
