"""Alembic environment: runs on a connection handed in by ``broker.core.db.migrate``,
or opens its own async engine when run from the alembic command line."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from broker.core.models import Base

target_metadata = Base.metadata


def _run(conn: Connection) -> None:
    context.configure(
        connection=conn,
        target_metadata=target_metadata,
        render_as_batch=conn.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(_run)
    await engine.dispose()


conn = context.config.attributes.get("connection")
if conn is not None:
    _run(conn)
else:
    asyncio.run(_run_async(context.config.get_main_option("sqlalchemy.url") or ""))
