"""Archiving the audit log: one canonical line per entry, exports of a time
range, and the hash that ties an export to a pruning checkpoint.

An entry's line is its row as JSON: the table's column names, keys sorted at
every level, no whitespace, ASCII only (other characters as ``\\u`` escapes,
so no file or terminal encoding can change it), ``at`` as ISO-8601 UTC with
microseconds and ``Z``. The same entry gives the same line on SQLite and
PostgreSQL, so anyone can recompute it from an export.

`RangeHash` is SHA-256 over those lines, each followed by a newline, in id
order: exactly the bytes of an export of those entries. When the retention
pruner removes audit entries it first writes an ``audit_checkpoint`` entry
holding that hash with the first and last id, the count and the cutoff
(``before``), so an export taken before the pruning can be checked against
it (`verify`, ``broker audit verify``), and a removed entry that was never
exported is at least known to have existed.

Exports stream in id order in batches (`export`); they never load the whole
range.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TextIO

from sqlalchemy import ColumnElement, func, select

from broker.core.audit import Action
from broker.core.db import DbSession
from broker.core.models import AuditEvent

BATCH = 500


def iso_micro(value: datetime) -> str:
    """``2026-03-05T14:30:00.123456Z``: UTC, microseconds, ``Z`` (lossless)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_dict(e: AuditEvent) -> dict[str, Any]:
    """An audit entry as the table holds it, column by column."""
    return {
        "id": e.id,
        "at": iso_micro(e.at),
        "action": e.action,
        "user_id": e.user_id,
        "user_email": e.user_email,
        "client_ip": e.client_ip,
        "session_id": e.session_id,
        "workspace_id": e.workspace_id,
        "details": e.details or {},
    }


def canonical(entry: dict[str, Any]) -> str:
    """The one line an entry (as `entry_dict` gives it, or as parsed back
    from an export) is written and hashed as."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def entry_line(e: AuditEvent) -> str:
    return canonical(entry_dict(e))


class RangeHash:
    """SHA-256 over entries' lines in id order, with the first and last id and
    the count. Entries must be added in increasing id order (`ValueError`)."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self.first_id: int | None = None
        self.last_id: int | None = None
        self.count = 0

    def add(self, entry_id: int, line: str) -> None:
        if self.last_id is not None and entry_id <= self.last_id:
            raise ValueError(f"audit entry {entry_id} is out of id order")
        self._sha.update(line.encode() + b"\n")
        if self.first_id is None:
            self.first_id = entry_id
        self.last_id = entry_id
        self.count += 1

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def parse_when(text: str) -> datetime:
    """A date (``2026-03-05``, midnight UTC) or an ISO-8601 time
    (``2026-03-05T14:30:00Z``, ``...+02:00``; without a zone: UTC), as an
    aware UTC datetime. `ValueError` otherwise."""
    text = text.strip()
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Window:
    """Entries written at ``since`` or later and before ``until`` (None: unbounded)."""

    since: datetime | None = None
    until: datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.since is not None:
            found.append(AuditEvent.at >= self.since)
        if self.until is not None:
            found.append(AuditEvent.at < self.until)
        return found


async def entries(
    db: Callable[[], DbSession], window: Window, *, batch: int = BATCH
) -> AsyncIterator[AuditEvent]:
    """The entries in ``window``, in id order, read ``batch`` at a time, each
    batch in a short transaction of its own. The id range is found once
    through the index on ``at``, so the batches never walk the rest of the log."""
    where = window.conditions()
    # ``id + 0``: found through the index on ``at`` (cost: the window's rows).
    # A bare min/max(id) lets PostgreSQL walk the primary key from an end,
    # filtering on ``at``: through every newer entry, as ids grow with time.
    some_id = AuditEvent.id + 0 if where else AuditEvent.id
    async with db() as s:
        first, last = (
            await s.execute(select(func.min(some_id), func.max(some_id)).where(*where))
        ).one()
    if first is None:
        return
    cursor = first - 1
    while True:
        async with db() as s:
            rows = list(
                (
                    await s.scalars(
                        select(AuditEvent)
                        .where(AuditEvent.id > cursor, AuditEvent.id <= last, *where)
                        .order_by(AuditEvent.id)
                        .limit(batch)
                    )
                ).all()
            )
        for row in rows:
            yield row
        if len(rows) < batch:
            return
        cursor = rows[-1].id


async def export(
    db: Callable[[], DbSession], out: TextIO, window: Window, *, batch: int = BATCH
) -> RangeHash:
    """Write the entries in ``window`` to ``out`` as JSON Lines (`entry_line`),
    in id order; returns the hash of what was written."""
    digest = RangeHash()
    async for e in entries(db, window, batch=batch):
        line = entry_line(e)
        out.write(line + "\n")
        digest.add(e.id, line)
    return digest


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """An ``audit_checkpoint`` entry: the pruner removed the ``count`` entries
    with ids ``first_id`` to ``last_id`` written before ``before``, whose
    lines hash to ``sha256``."""

    id: int
    first_id: int
    last_id: int
    count: int
    sha256: str
    before: datetime

    @classmethod
    def of(cls, e: AuditEvent) -> Checkpoint:
        """`ValueError` when ``e`` is no well-formed checkpoint entry."""
        d = e.details or {}
        numbers = [d.get(k) for k in ("first_id", "last_id", "count")]
        sha, before = d.get("sha256"), d.get("before")
        ints = [n for n in numbers if isinstance(n, int) and not isinstance(n, bool)]
        if len(ints) != 3 or not isinstance(sha, str) or not isinstance(before, str):
            raise ValueError(f"audit entry {e.id} is not a well-formed checkpoint")
        return cls(e.id, ints[0], ints[1], ints[2], sha, parse_when(before))


async def checkpoints(db: Callable[[], DbSession], ids: Iterable[int] = ()) -> list[Checkpoint]:
    """The checkpoint entries (only those of ``ids`` when given), oldest first."""
    stmt = select(AuditEvent).where(AuditEvent.action == Action.AUDIT_CHECKPOINT)
    wanted = list(ids)
    if wanted:
        stmt = stmt.where(AuditEvent.id.in_(wanted))
    async with db() as s:
        rows = (await s.scalars(stmt.order_by(AuditEvent.id))).all()
    return [Checkpoint.of(e) for e in rows]


@dataclass(frozen=True, slots=True)
class Checked:
    """A checkpoint held against an export: ``found`` of its ``count``
    entries were in the export; ``ok`` when all were and they hash to its hash."""

    checkpoint: Checkpoint
    found: int
    ok: bool


def verify(lines: Iterable[str], checkpoint: Checkpoint) -> Checked:
    """Hold the export ``lines`` (in id order) against ``checkpoint``: the
    entries of its id range written before its cutoff must be exactly as many
    as it counted and hash to its hash. A line that is no entry raises
    `ValueError`."""
    c = checkpoint
    digest = RangeHash()
    for line in lines:
        if not line.strip():
            continue
        entry = json.loads(line)
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int):
            raise ValueError("not an audit entry line")
        if c.first_id <= entry["id"] <= c.last_id and parse_when(str(entry["at"])) < c.before:
            digest.add(entry["id"], canonical(entry))
    ok = digest.count == c.count and digest.hexdigest() == c.sha256
    return Checked(c, digest.count, ok)
