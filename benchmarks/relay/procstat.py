"""What /proc says about a process: CPU seconds, resident memory, and pinning
to a CPU (what ``taskset -a -p`` does, for every thread)."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (VmRSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def pin(pid: int, cpu: int) -> None:
    """Run every thread of ``pid`` on ``cpu`` only (threads made later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), {cpu})
        except (ProcessLookupError, FileNotFoundError):
            pass  # a thread that just ended


def can_pin() -> bool:
    """Two CPUs or more are usable: one for the relay, one for the load."""
    return len(os.sched_getaffinity(0)) >= 2
