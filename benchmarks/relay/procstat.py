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


def core_busy() -> dict[int, float]:
    """CPU seconds each core spent busy since boot (every process's, from /proc/stat)."""
    busy: dict[int, float] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, values[:8])
            busy[int(name[3:])] = (user + nice + system + irq + softirq + steal) / _TICKS
    return busy
