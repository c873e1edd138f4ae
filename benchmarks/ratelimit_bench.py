"""What a rate limit shared by ``broker serve --workers`` costs: one spend
(`broker.core.ratebuckets.RateStore.take`, an UPSERT in autocommit) against
PostgreSQL, next to the in-memory bucket one process uses.

Usage (from the repository root; the database must exist and is migrated)::

    .venv/bin/python -m benchmarks.ratelimit_bench \\
        --database postgresql+asyncpg://postgres@127.0.0.1:5432/NAME [--spends N]

Prints, for N spends on one connection after a warm-up: the median and p99
wall time of one spend (allowed spends over distinct keys, as a launch per
user; refused spends of one spent-out key, which read the row again), the
event loop's CPU time per spend (what a worker pays besides waiting), and
the in-memory bucket's per-spend time for comparison. Only a spend touches
the database: the checks before a request (`peek`) stay in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from broker.core.db import create_engine, migrate
from broker.core.ratebuckets import RateStore
from broker.web.ratelimit import Bucket


async def _timed(store: RateStore, keys: list[str], burst: int) -> tuple[list[float], float]:
    walls = []
    cpu = time.process_time()
    for key in keys:
        started = time.perf_counter()
        await store.take(key, 1.0, burst)
        walls.append(time.perf_counter() - started)
    return walls, (time.process_time() - cpu) / len(keys)


def _report(what: str, walls: list[float], cpu: float) -> None:
    ms = sorted(w * 1000 for w in walls)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(
        f"{what:<34} median {statistics.median(ms):6.3f} ms  p99 {p99:6.3f} ms  "
        f"CPU {cpu * 1000:6.3f} ms/spend"
    )


async def run(database: str, spends: int) -> None:
    engine = create_engine(database)
    try:
        await migrate(engine)
        store = RateStore(engine)
        await _timed(store, [f"warm:{i}" for i in range(50)], 10)
        run_id = time.time_ns()
        walls, cpu = await _timed(store, [f"bench:{run_id}:{i}" for i in range(spends)], 10)
        _report("allowed (new key each)", walls, cpu)
        await store.take(f"out:{run_id}", 1.0, 1)
        walls, cpu = await _timed(store, [f"out:{run_id}"] * spends, 1)
        _report("refused (one key, spent out)", walls, cpu)
        await store.prune()
    finally:
        await engine.dispose()
    bucket = Bucket(1.0, 10)
    started = time.perf_counter()
    for i in range(spends):
        bucket.take(f"k{i}")
    per = (time.perf_counter() - started) / spends
    print(f"{'in memory (one process)':<34} {per * 1e6:6.2f} us/spend")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database", required=True)
    p.add_argument("--spends", type=int, default=2000)
    args = p.parse_args()
    asyncio.run(run(args.database, args.spends))


if __name__ == "__main__":
    main()
