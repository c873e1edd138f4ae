"""``broker serve`` that counts the SQL it runs, for `benchmarks.db`.

Usage: ``python -m benchmarks.db.serve COUNTS_FILE <broker serve arguments>``.
It is the broker's own ``serve`` in this process (so the process's CPU time
is the broker's), with two SQLAlchemy event hooks installed first, on every
engine the broker creates:

- ``before_cursor_execute``: every statement the broker sends through
  SQLAlchemy, counted by its text and by who ran it (``request`` for the
  HTTP handlers' tasks, else the name of the background task: ``reaper``,
  ``revoke-retry``, ...), with the parameters it last ran with (so the
  benchmark can EXPLAIN what really ran, not a copy of the queries);
- pool checkouts and transactions begun, committed and rolled back (each a
  round trip on PostgreSQL: a checkout's pre-ping, ``BEGIN``, ``COMMIT``,
  ``ROLLBACK``), under ``events``;
- on SQLite, a progress handler counting the virtual machine's steps in
  thousands: SQLite keeps no per-statement row counters, and its steps grow
  with the rows a statement reads (a table scan costs several per row).

SIGUSR1 writes the counts to COUNTS_FILE as JSON (with a sequence number, so
the reader knows a new one arrived). Not counted: statements the broker
sends past SQLAlchemy (the PostgreSQL event listener's own connection).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool
from sqlalchemy.util import await_

PROGRESS_STEPS = 1000


def encode(value: Any) -> Any:
    """Parameters as JSON, datetimes tagged so they can be rebuilt."""
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$datetime"}:
            return datetime.fromisoformat(value["$datetime"])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def who_runs() -> str:
    """``request`` inside an HTTP handler (aiohttp's tasks are unnamed), else
    the background task's name."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return "other"
    name = task.get_name() if task is not None else "other"
    return "request" if name.startswith("Task-") else name


class Counter:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._seq = 0
        self.statements = 0
        # statement text -> {"by": {who: count}, "params": last parameters}
        self.seen: dict[str, dict[str, Any]] = {}
        self._steps = 0
        self._steps_lock = threading.Lock()
        # What costs a round trip besides statements: pool checkouts (a
        # pre-ping on PostgreSQL), transactions begun, committed, rolled back.
        self.events: dict[str, int] = {}

    def on_event(self, name: str) -> Any:
        def count(*_: Any) -> None:
            self.events[name] = self.events.get(name, 0) + 1

        return count

    def on_execute(
        self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any
    ) -> None:
        self.statements += 1
        entry = self.seen.setdefault(statement, {"by": {}, "params": None})
        who = who_runs()
        entry["by"][who] = entry["by"].get(who, 0) + 1
        entry["params"] = encode(parameters)

    def on_connect(self, dbapi_conn: Any, _record: Any) -> None:
        driver = getattr(dbapi_conn, "driver_connection", None)
        if driver is not None and hasattr(driver, "set_progress_handler"):  # aiosqlite
            await_(driver.set_progress_handler(self._step, PROGRESS_STEPS))

    def _step(self) -> int:
        with self._steps_lock:
            self._steps += 1
        return 0  # anything else would abort the statement

    def dump(self, *_: Any) -> None:
        self._seq += 1
        data = {
            "seq": self._seq,
            "statements": self.statements,
            "vm_steps_k": self._steps,
            "events": self.events,
            "seen": self.seen,
        }
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self._path)


def main() -> int:
    counter = Counter(Path(sys.argv[1]))
    event.listen(Engine, "before_cursor_execute", counter.on_execute)
    event.listen(Pool, "connect", counter.on_connect)
    event.listen(Pool, "checkout", counter.on_event("checkout"))
    for name in ("begin", "commit", "rollback"):
        event.listen(Engine, name, counter.on_event(name))
    signal.signal(signal.SIGUSR1, counter.dump)
    from broker.__main__ import main as broker_main

    return broker_main(["serve", *sys.argv[2:]])


if __name__ == "__main__":
    sys.exit(main())
