"""Failure injection for the simulated NetBird: what goes wrong, for which calls, how often.

A `Fault` hits the next ``times`` matching calls (``None``: every one), each
with probability ``rate`` drawn from the simulator's seeded RNG. ``method``
and ``path`` (an `fnmatch` pattern such as ``/api/policies*``) narrow which
calls match. Faults are tried in the order they were added; a call meets at
most one. A fault is a live knob: ``hits`` counts the calls it hit.
"""

from __future__ import annotations

import fnmatch
import random
from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    ERROR = "error"
    """Answer ``status`` (500 by default) without doing anything."""
    RATE_LIMIT = "rate_limit"
    """Answer 429, NetBird's rate limit (no ``Retry-After``)."""
    HANG = "hang"
    """Never answer: the client times out (the simulator's close ends it)."""
    SLOW = "slow"
    """Answer normally after ``delay`` seconds."""
    DROP = "drop"
    """Close the connection without answering, before doing anything."""
    COMMIT_THEN_ERROR = "commit_then_error"
    """Do what was asked, then answer ``status`` (500 by default)."""
    COMMIT_THEN_DROP = "commit_then_drop"
    """Do what was asked, then close the connection without answering."""
    COMMIT_THEN_HANG = "commit_then_hang"
    """Do what was asked, then never answer."""

    @property
    def commits(self) -> bool:
        return self.value.startswith("commit_then_")


@dataclass
class Fault:
    kind: FaultKind
    times: int | None = 1
    rate: float = 1.0
    method: str | None = None
    path: str | None = None
    delay: float = 0.0
    status: int = 500
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or fnmatch.fnmatchcase(path, self.path)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


class FaultPlan:
    """The faults armed on one simulator."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        if not 0.0 <= fault.rate <= 1.0:
            raise ValueError("a fault's rate is a probability, 0 to 1")
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """The fault hitting this call, if any (counted as a hit)."""
        for fault in self.faults:
            if fault.exhausted or not fault.matches(method, path):
                continue
            if fault.rate < 1.0 and self._rng.random() >= fault.rate:
                continue
            fault.hits += 1
            return fault
        return None
