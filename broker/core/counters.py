"""Totals kept in the database (`broker.core.models.SessionCounter`), so that
``/metrics`` reads a few rows whatever the number of sessions kept, and every
replica reports the same values across restarts.

A total is added to in the transaction of the change it counts (`add_ended`
in the one that ends the session), so it never drifts from the rows: a
rolled-back end counts nothing. The add is one upsert, safe against
concurrent adds on SQLite and PostgreSQL alike; on PostgreSQL it holds the
counter's row until the caller commits, so callers add last and commit soon.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from broker.core.db import DbSession
from broker.core.models import EndReason, SessionCounter

ENDED = "ended"


async def add_ended(db: DbSession, reason: EndReason) -> None:
    """Count one more session ended for ``reason`` in ``db``'s transaction."""
    dialect = (await db.connection()).dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(SessionCounter).values(name=ENDED, reason=str(reason), value=1)
    await db.execute(
        stmt.on_conflict_do_update(
            index_elements=[SessionCounter.name, SessionCounter.reason],
            set_={"value": SessionCounter.value + 1},
        )
    )


async def ended_totals(db: DbSession) -> dict[str, int]:
    """Sessions ended ever, by reason (reasons never seen are missing)."""
    rows = await db.execute(
        select(SessionCounter.reason, SessionCounter.value).where(SessionCounter.name == ENDED)
    )
    return {str(reason): int(value) for reason, value in rows.all()}
