"""The audit log: who did what to which session, when, and from where.

Rows are written in the same transaction as the state change they record
(`record` only adds to the caller's transaction) and are never updated. Only
the retention pruner (`broker.core.retention`) deletes them, once older than
``retention.audit_days``, after writing a checkpoint entry with the hash of
what it removes (`broker.core.archive`). Details must never hold secrets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, CompoundSelect, Select, select, union

from broker.core.db import DbSession
from broker.core.models import AuditEvent


class Action(StrEnum):
    LAUNCH_WORKSPACE = "launch_workspace"
    LAUNCH_FAILED = "launch_failed"
    DISCONNECT_SESSION = "disconnect_session"
    STOP_WORKSPACE = "stop_workspace"
    END_SESSION = "end_session"
    TUNNEL_GRANTED = "tunnel_granted"
    REVOKE_TUNNEL = "revoke_tunnel"
    TUNNEL_FAILED = "tunnel_failed"
    OPEN_APP = "open_app"  # an HTML5 session's viewer token traded for the app cookie
    # The retention pruner: one summary a run that removed anything (counts per
    # table, cutoffs), and before audit entries go, the checkpoint of their range.
    RETENTION_PRUNE = "retention_prune"
    AUDIT_CHECKPOINT = "audit_checkpoint"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a user (with the address they called from) or the system."""

    user_id: str | None
    email: str | None
    client_ip: str | None = None

    @classmethod
    def system(cls) -> Actor:
        return cls(None, None, None)


def record(
    db: DbSession,
    action: Action,
    actor: Actor,
    at: datetime,
    *,
    session_id: str | None = None,
    workspace_id: str | None = None,
    **details: Any,
) -> AuditEvent:
    """Add an entry to the caller's transaction; its ``id`` is set once flushed."""
    event = AuditEvent(
        at=at,
        action=str(action),
        user_id=actor.user_id,
        user_email=actor.email,
        client_ip=actor.client_ip,
        session_id=session_id,
        workspace_id=workspace_id,
        details=details,
    )
    db.add(event)
    return event


@dataclass(frozen=True, slots=True)
class AuditQuery:
    user: str | None = None
    user_id: str | None = None
    action: str | None = None
    session_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None
    limit: int = 100


async def query(db: DbSession, q: AuditQuery) -> list[AuditEvent]:
    """Newest first (`listing`)."""
    return list((await db.scalars(listing(q))).all())


def listing(q: AuditQuery) -> Select[AuditEvent]:
    """Newest first. ``user`` matches the user id or the email.

    The page's ids are picked from an index alone (``user_id``, ``user_email``
    or ``action``, each with ``id``: one branch each for ``user``), then those
    rows are read. Asked for the rows straight, PostgreSQL prefers walking the
    primary key backwards past every other entry (it assumes a user's entries
    are spread evenly over time), which costs the whole log after a user's
    last entry; this way a page costs the same however deep it is. Only the
    time range has no index in id order: it skips the entries after
    ``until``."""
    ids: Select[int] | CompoundSelect[int]
    if q.user is None:
        ids = _newest_ids(_conditions(q), q.limit)
    else:
        by_id = _conditions(q) + [AuditEvent.user_id == q.user]
        by_email = _conditions(q) + [AuditEvent.user_email == q.user]
        ids = union(
            select(_newest_ids(by_id, q.limit).subquery().c.id),
            select(_newest_ids(by_email, q.limit).subquery().c.id),
        )
    return (
        select(AuditEvent)
        .where(AuditEvent.id.in_(ids))
        .order_by(AuditEvent.id.desc())
        .limit(q.limit)
    )


def _conditions(q: AuditQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if q.user_id is not None:
        where.append(AuditEvent.user_id == q.user_id)
    if q.action is not None:
        where.append(AuditEvent.action == q.action)
    if q.session_id is not None:
        where.append(AuditEvent.session_id == q.session_id)
    if q.since is not None:
        where.append(AuditEvent.at >= q.since)
    if q.until is not None:
        where.append(AuditEvent.at < q.until)
    if q.before_id is not None:
        where.append(AuditEvent.id < q.before_id)
    return where


def _newest_ids(where: list[ColumnElement[bool]], limit: int) -> Select[int]:
    return select(AuditEvent.id).where(*where).order_by(AuditEvent.id.desc()).limit(limit)
