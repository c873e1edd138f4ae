"""``make bench``'s relay benchmark in miniature (``--quick``): the broker,
guacamole-lite (as shipped and with TCP_NODELAY) and raw TCP each get their
numbers at full speed, at capture pace and in a connect storm. It checks that
the harness works end to end, never how fast anything was."""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RELAYS = ("broker", "guacamole-lite 1.2", "lite + TCP_NODELAY", "raw TCP (no relay)")
NUMBER = r"\d+(\.\d+)?"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "guacamole-lite").is_dir(),
    reason="needs Node.js and guacamole-lite (make system-deps install)",
)


async def test_the_relay_benchmark_measures_every_relay() -> None:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "benchmarks.relay", "--quick"),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 240)
    text = out.decode()
    assert process.returncode == 0, err.decode()[-4000:]
    summary = text.split("\n\n")[1].splitlines()
    for relay in RELAYS:
        (row,) = [line for line in summary if line.startswith(relay + "  ")]
        cells = re.split(r"\s{2,}", row.strip())
        # MB/s @1 / @10, input p50 / p99, and every storm viewer had a frame.
        assert re.match(rf"{NUMBER}( [!~])? / {NUMBER}", cells[1]), row
        assert re.match(rf"{NUMBER} / {NUMBER} @20", cells[3]), row
        assert re.search(r"\((\d+)/\1\)", cells[6]), row
        if not relay.startswith("raw"):
            assert re.match(rf"{NUMBER} / {NUMBER}", cells[2]), row  # CPU ms per MB
            assert cells[8].endswith(" MB"), row  # idle RSS
    assert "command: " in text and "Ratios" in text
    assert "broker / guacamole-lite 1.2" in text and "broker / lite + TCP_NODELAY" in text
