"""What history costs the broker: its routes, idle work and query plans at 0
and at N stored sessions.

Usage (from the repository root; ``make bench-db`` runs it)::

    .venv/bin/python -m benchmarks.db [--db sqlite|postgres|both] [--rows N]
        [--requests 200] [--idle-seconds 60] [--pg postgresql://...]

A benchmark, not a test: it prints numbers and judges nothing. For each
database, twice (0 sessions, then N: 1,000,000 on PostgreSQL, 100,000 on
SQLite by default), in a database made fresh for the run and removed after:

1. the broker's migrations make the schema, and `benchmarks.db.seed` writes
   the rows by set-based SQL (about 1,000 users, one with 5,000 sessions,
   1 % active, N/100 workspaces, two audit entries and a viewer token per
   session);
2. the real broker starts as its own process on a loopback port
   (`benchmarks.db.serve`: ``broker serve`` with SQL counting hooks);
3. each route is called ``--requests`` times, one at a time, after a short
   warm-up, and its p50 and p99 printed: launch and disconnect, the user's
   listings (as the user with 5,000 sessions), every admin listing and
   filter, the audit listings, ``/metrics``;
4. the broker is left idle (``--settle`` s, then ``--idle-seconds`` s
   measured): its CPU time (from /proc), the SQL statements it ran (its
   SQLAlchemy hook: every statement, exactly) and the rows they touched:
   on PostgreSQL the database's own counters (``pg_stat_database``:
   ``tup_returned`` plus rows written; ``pg_stat_statements`` is not
   assumed to be loaded), read after the broker exits so PostgreSQL has
   flushed them; on SQLite, which counts no rows, the virtual machine's
   steps (a progress handler), which grow with the rows read;
5. at N only, the plan of every distinct read the broker ran for each route
   and while idle (`benchmarks.db.plans`), whole-table reads flagged.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from benchmarks.db.databases import Database, Postgres, Sqlite
from benchmarks.db.plans import Plan, collect, explain, render
from benchmarks.db.process import CountedBroker
from benchmarks.db.seed import HEAVY_USER, Shape
from benchmarks.db.timing import Anchors, Client, percentile, routes

DEFAULT_ROWS = {"postgres": 1_000_000, "sqlite": 100_000}
DEFAULT_SETTLE = {"postgres": 11.0, "sqlite": 2.0}  # PostgreSQL flushes idle stats within 10 s
MAINTENANCE = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class Measured:
    rows: int
    seeded: float = 0.0
    # Each route's milliseconds by (the name the table shows, its label): the
    # names of the indented filters repeat (``?user=<id>``), the labels do not.
    latency: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    cpu_percent: float = 0.0
    statements_per_minute: float = 0.0
    statements_by_task: dict[str, float] = field(default_factory=dict)  # a minute
    work_per_minute: float = 0.0  # rows touched (PostgreSQL) or thousands of VM steps (SQLite)
    plans: list[Plan] = field(default_factory=list)


async def create(kind: str, label: str, args: argparse.Namespace) -> Database:
    if kind == "postgres":
        return await Postgres.create(args.pg, label)
    return await Sqlite.create(label)


async def anchors(db: Database) -> Anchors:
    """Where the deep pages start: 4,900 sessions back in the heavy user's
    history, nine tenths back in everyone's (or as far as there is)."""
    heavy = int(await db.value(f"SELECT count(*) FROM sessions WHERE user_id = '{HEAVY_USER}'"))
    total = int(await db.value("SELECT count(*) FROM sessions"))
    order = "ORDER BY started_at DESC, id DESC LIMIT 1"
    user_deep = await db.value(
        f"SELECT id FROM sessions WHERE user_id = '{HEAVY_USER}' {order}"
        f" OFFSET {max(0, min(4900, heavy - 1))}"
    )
    admin_deep = await db.value(f"SELECT id FROM sessions {order} OFFSET {(total - 1) * 9 // 10}")
    return Anchors(str(user_deep), str(admin_deep))


async def measure(kind: str, shape: Shape, args: argparse.Namespace, *, full: bool) -> Measured:
    """One run: a fresh database with ``shape.rows`` sessions (unless ``full``
    only their active ones: "0" is no history, the same sessions running), the
    broker started on it, timed, left idle and stopped."""
    rows = shape.rows if full else 0
    result = Measured(rows)
    folder = Path(tempfile.mkdtemp(prefix=f"bench-db-{kind}-"))
    db = await create(kind, "n" if full else "0", args)
    broker = CountedBroker(folder, db.url)
    try:
        what = f"{rows:,} sessions" if full else "the active sessions only"
        print(f"{kind}: seeding {what}", file=sys.stderr, flush=True)
        result.seeded = await db.seed(shape, history=full)
        await broker.start()
        per_use: dict[str, dict[str, int]] = {}
        async with aiohttp.ClientSession() as http:
            client = Client(http, broker.base)
            print(f"{kind}: timing the routes at {rows:,}", file=sys.stderr, flush=True)
            launch, end = await client.launches(args.requests)
            result.latency["POST launch", "launch"] = launch
            result.latency["POST disconnect", "disconnect"] = end
            listed = routes(await anchors(db), shape.probe_workspace())
            for route in listed:
                result.latency[route.name, route.label] = await client.timed(route, args.requests)
            if full:
                before = await broker.counts()
                await client.launches(1)
                per_use["launch + disconnect"] = (await broker.counts()).since(before)["request"]
                for route in listed:
                    before = await broker.counts()
                    await client.call("GET", route.path, admin=route.admin)
                    ran = (await broker.counts()).since(before)
                    per_use[f"GET {route.label}"] = ran.get("request", {})
        print(f"{kind}: idle for {args.idle_seconds:g} s", file=sys.stderr, flush=True)
        await asyncio.sleep(args.settle if args.settle is not None else DEFAULT_SETTLE[kind])
        counts0, cpu0, activity0 = await broker.counts(), broker.cpu(), await db.activity()
        await asyncio.sleep(args.idle_seconds)
        counts1, cpu1 = await broker.counts(), broker.cpu()
        broker.stop()  # PostgreSQL flushes a connection's counters when it closes
        activity1 = await db.activity()
        minutes = args.idle_seconds / 60
        idle = counts1.since(counts0)
        idle.pop("request", None)
        result.cpu_percent = (cpu1 - cpu0) / args.idle_seconds * 100
        result.statements_by_task = {w: sum(s.values()) / minutes for w, s in idle.items()}
        result.statements_per_minute = sum(result.statements_by_task.values())
        if activity0 is not None and activity1 is not None:
            touched = ("tup_returned", "written")
            result.work_per_minute = sum(activity1[k] - activity0[k] for k in touched) / minutes
        else:
            result.work_per_minute = (counts1.vm_steps_k - counts0.vm_steps_k) / minutes
        if full:
            for who, statements in sorted(idle.items()):
                per_use[f"idle: {who}"] = statements
            result.plans = collect(per_use)
            await explain(db, result.plans, counts1)
        return result
    finally:
        broker.stop()
        await db.drop()
        shutil.rmtree(folder, ignore_errors=True)


def ratio(at_n: float, at_0: float) -> str:
    return f"{at_n / at_0:.1f}x" if at_0 > 0 else "-"


def report(kind: str, zero: Measured, full: Measured, args: argparse.Namespace) -> list[str]:
    n = full.rows
    seeded = f"{n:,} sessions seeded in {full.seeded:.0f} s"
    lines = [
        "",
        f"== {kind}: 0 and N = {seeded} ({os.cpu_count()} CPU cores) ==",
        "(0: no history, only the N run's active sessions; N: those and the ended history)",
        "",
        f"{'route (' + str(args.requests) + ' requests each, ms)':<40}"
        f"{'p50 0':>9}{'p50 N':>9}{'N/0':>7}{'p99 0':>10}{'p99 N':>9}{'N/0':>7}",
    ]
    for (name, label), atn in full.latency.items():
        at0 = zero.latency[name, label]
        p50 = percentile(at0, 50), percentile(atn, 50)
        p99 = percentile(at0, 99), percentile(atn, 99)
        lines.append(
            f"{name:<40}{p50[0]:>9.1f}{p50[1]:>9.1f}{ratio(p50[1], p50[0]):>7}"
            f"{p99[0]:>10.1f}{p99[1]:>9.1f}{ratio(p99[1], p99[0]):>7}"
        )
    work = (
        "rows touched / min (pg_stat_database)"
        if kind == "postgres"
        else "VM steps / min, thousands (SQLite)"
    )
    lines += [
        "",
        f"{f'idle broker, {args.idle_seconds:g} s':<40}{'0':>12}{'N':>12}{'N/0':>8}",
    ]
    for label, a, b, fmt in (
        ("CPU, % of one core", zero.cpu_percent, full.cpu_percent, ".2f"),
        ("SQL statements / min", zero.statements_per_minute, full.statements_per_minute, ".0f"),
        (work, zero.work_per_minute, full.work_per_minute, ",.0f"),
    ):
        lines.append(f"{label:<40}{format(a, fmt):>12}{format(b, fmt):>12}{ratio(b, a):>8}")
        if label.startswith("SQL"):
            for task in sorted(zero.statements_by_task.keys() | full.statements_by_task.keys()):
                a, b = zero.statements_by_task.get(task, 0), full.statements_by_task.get(task, 0)
                lines.append(f"{'  by ' + task:<40}{a:>12.0f}{b:>12.0f}{ratio(b, a):>8}")
    lines += ["", f"== {kind}: plans at N = {n:,} ==", ""]
    lines += render(full.plans)
    return lines


async def run(args: argparse.Namespace) -> None:
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    for kind in kinds:
        shape = Shape(args.rows if args.rows is not None else DEFAULT_ROWS[kind])
        started = time.monotonic()
        zero = await measure(kind, shape, args, full=False)
        full = await measure(kind, shape, args, full=True)
        print("\n".join(report(kind, zero, full, args)), flush=True)
        print(f"({kind}: {time.monotonic() - started:.0f} s in all)", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--rows", type=int, help="sessions at N (default 1,000,000 / 100,000)")
    p.add_argument("--requests", type=int, default=200, help="timed requests per route")
    p.add_argument("--idle-seconds", type=float, default=60.0)
    p.add_argument("--settle", type=float, help="seconds idle before measuring idle work")
    p.add_argument("--pg", default=MAINTENANCE, help="PostgreSQL maintenance database URL")
    args = p.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
