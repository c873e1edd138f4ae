"""The plans of the statements the broker really ran.

No copy of the broker's queries lives here: the broker's SQL hook
(`benchmarks.db.serve`) records every statement with its last parameters,
the benchmark attributes each to the route it timed (or to the background
task that ran it while idle), and each distinct read or update is
EXPLAINed (PostgreSQL ``EXPLAIN``, SQLite ``EXPLAIN QUERY PLAN``) with the
parameters it ran with. However the broker's queries are rewritten, the
plans shown are of the SQL it runs.

A plan with a sequential scan of one of the broker's tables (``Seq Scan on
sessions``, or SQLite's ``SCAN sessions`` without an index) is flagged: it
reads the table in storage order until it has its rows, all of them unless
a LIMIT is met early.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from benchmarks.db.databases import Database
from benchmarks.db.process import Counts
from benchmarks.db.serve import decode

TABLES = ("sessions", "audit_events", "viewer_tokens", "app_cookies")
_PG_SEQ = re.compile(r"Seq Scan on (\w+)")
_SQLITE_SCAN = re.compile(r"^\s*SCAN (\w+)(.*)$")
_SELECT_LIST = re.compile(r"^SELECT (.+?) FROM ", re.S)


@dataclass
class Plan:
    statement: str
    used_by: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def seq_scans(self) -> list[str]:
        found = {t for line in self.lines if (t := seq_scan(line)) is not None}
        # SQLite's plain ``SCAN audit_events`` under ``ORDER BY id DESC LIMIT``
        # walks the table in rowid order (its primary key) and stops at the
        # LIMIT: newest first, one page read, however long the log.
        if "ORDER BY audit_events.id DESC LIMIT" in " ".join(self.statement.split()):
            found.discard("audit_events")
        return sorted(found)


def seq_scan(line: str) -> str | None:
    """The broker's table ``line`` of a plan scans sequentially, if any."""
    if m := _PG_SEQ.search(line):
        return m.group(1) if m.group(1) in TABLES else None
    if m := _SQLITE_SCAN.match(line):
        return m.group(1) if m.group(1) in TABLES and "USING" not in m.group(2) else None
    return None


def explained_kinds(statement: str) -> bool:
    """Reads and updates of the broker's tables (an INSERT's plan says nothing)."""
    head = statement.lstrip().upper()
    return head.startswith(("SELECT", "UPDATE", "DELETE", "WITH")) and any(
        re.search(rf"\b{t}\b", statement) for t in TABLES
    )


def collect(per_use: dict[str, dict[str, int]]) -> list[Plan]:
    """One `Plan` per distinct statement, named by what used it."""
    plans: dict[str, Plan] = {}
    for use, statements in per_use.items():
        for statement in statements:
            if explained_kinds(statement):
                plans.setdefault(statement, Plan(statement)).used_by.append(use)
    return list(plans.values())


async def explain(db: Database, plans: list[Plan], counts: Counts) -> None:
    for plan in plans:
        try:
            plan.lines = await db.explain(plan.statement, decode(counts.params(plan.statement)))
        except Exception as exc:  # a plan that cannot be had is reported, not fatal
            plan.error = f"{type(exc).__name__}: {exc}"


def short(statement: str, width: int = 240) -> str:
    """The statement on one line, its select list elided."""
    one = " ".join(statement.split())
    one = _SELECT_LIST.sub("SELECT ... FROM ", one, count=1)
    return one if len(one) <= width else one[: width - 3] + "..."


def render(plans: list[Plan]) -> list[str]:
    out = []
    for plan in plans:
        flag = "  <-- SEQ SCAN of " + ", ".join(plan.seq_scans) if plan.seq_scans else ""
        out.append(f"-- {'; '.join(plan.used_by)}{flag}")
        out.append(f"   {short(plan.statement)}")
        if plan.error:
            out.append(f"   (no plan: {plan.error})")
        out += [f"     {line}" for line in plan.lines]
        out.append("")
    scanning = [p for p in plans if p.seq_scans]
    out.append(
        f"{len(scanning)} of {len(plans)} statements scan a table sequentially"
        + (": " + ", ".join(sorted({u for p in scanning for u in p.used_by})) if scanning else "")
    )
    return out
