"""Read-only questions about sessions: listings for the API, the figures the
reaper, the reconciler and the health check need. Nothing here changes a row
(`broker.core.sessions` does that), so every answer may be stale by the time
the caller acts on it; callers that act do so through a conditional update.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from broker.core.db import DbSession
from broker.core.errors import NotFound
from broker.core.models import Session, SessionStatus, looks_like_session_id
from tunnels.base import TunnelStatus

SESSION_NOT_FOUND = "Session not found"

Timing = tuple[str, str, datetime, datetime, datetime]


class SessionQueries:
    """Reads of the ``sessions`` table. Database errors propagate."""

    def __init__(self, db: async_sessionmaker[DbSession]) -> None:
        self._db = db

    async def list_for_user(
        self, user_id: str, *, limit: int = 100, before: str | None = None
    ) -> list[Session]:
        return await self.query(user_id=user_id, limit=limit, before=before)

    async def query(
        self,
        *,
        user_id: str | None = None,
        user: str | None = None,
        status: str | None = None,
        workspace_id: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[Session]:
        """Newest first; ``before`` is a session id to page back from (`NotFound`
        when it names no session, or one of another user when ``user_id`` is given)."""
        stmt = select(Session)
        if user_id is not None:
            stmt = stmt.where(Session.user_id == user_id)
        if user is not None:
            stmt = stmt.where((Session.user_id == user) | (Session.user_email == user))
        if status is not None:
            stmt = stmt.where(Session.status == status)
        if workspace_id is not None:
            stmt = stmt.where(Session.workspace_id == workspace_id)
        async with self._db() as db:
            if before is not None:
                anchor = await db.get(Session, before) if looks_like_session_id(before) else None
                if anchor is None or (user_id is not None and anchor.user_id != user_id):
                    raise NotFound("Session given in 'before' not found")
                stmt = stmt.where(
                    (Session.started_at < anchor.started_at)
                    | ((Session.started_at == anchor.started_at) & (Session.id < anchor.id))
                )
            stmt = stmt.order_by(Session.started_at.desc(), Session.id.desc()).limit(limit)
            return list((await db.scalars(stmt)).all())

    async def get_for_user(self, user_id: str, session_id: str) -> Session:
        """The caller's own session; anything else is `NotFound` (never 403)."""
        session = await self.get(session_id)
        if session is None or session.user_id != user_id:
            raise NotFound(SESSION_NOT_FOUND)
        return session

    async def existing(self, session_id: str) -> Session:
        """The session ``session_id``, whoever's it is; `NotFound` when there is none."""
        session = await self.get(session_id)
        if session is None:
            raise NotFound(SESSION_NOT_FOUND)
        return session

    async def get(self, session_id: str) -> Session | None:
        if not looks_like_session_id(session_id):
            return None
        async with self._db() as db:
            return await db.get(Session, session_id)

    async def active_in_workspace(self, workspace_id: str) -> Session | None:
        async with self._db() as db:
            return await db.scalar(
                select(Session).where(
                    Session.workspace_id == workspace_id, Session.status == SessionStatus.ACTIVE
                )
            )

    async def active_workspace_ids(self) -> set[str]:
        async with self._db() as db:
            rows = await db.scalars(
                select(Session.workspace_id).where(Session.status == SessionStatus.ACTIVE)
            )
            return set(rows.all())

    async def count_by_status(self) -> dict[str, int]:
        async with self._db() as db:
            rows = await db.execute(select(Session.status, func.count()).group_by(Session.status))
            return {str(status): int(count) for status, count in rows.all()}

    # -- for the reaper ----------------------------------------------------------

    async def active_timings(self) -> list[Timing]:
        """(id, workspace, started, last input, last viewer) of every active session."""
        async with self._db() as db:
            rows = await db.execute(
                select(
                    Session.id,
                    Session.workspace_id,
                    Session.started_at,
                    Session.last_activity_at,
                    Session.last_viewer_at,
                ).where(Session.status == SessionStatus.ACTIVE)
            )
            return [tuple(r) for r in rows.all()]  # type: ignore[misc]

    async def connect_failures(self) -> dict[str, datetime]:
        """Active sessions whose viewers failed to connect since their last
        success: id -> the first such failure."""
        async with self._db() as db:
            rows = await db.execute(
                select(Session.id, Session.connect_failing_since).where(
                    Session.status == SessionStatus.ACTIVE,
                    Session.connect_failing_since.is_not(None),
                )
            )
            return {sid: since for sid, since in rows.all() if since is not None}

    async def end_reasons(self, session_ids: Collection[str]) -> dict[str, str]:
        """For those of ``session_ids`` that are no longer active: why they ended."""
        if not session_ids:
            return {}
        async with self._db() as db:
            rows = await db.execute(
                select(Session.id, Session.end_reason).where(
                    Session.id.in_(list(session_ids)), Session.status != SessionStatus.ACTIVE
                )
            )
            return {sid: reason or "" for sid, reason in rows.all()}

    # -- for the reconciler and the revoke retry ---------------------------------

    async def active_grants(self) -> dict[str, str | None]:
        """Active session ids and the grant id each stored (None while launching)."""
        async with self._db() as db:
            rows = await db.execute(
                select(Session.id, Session.grant_id).where(Session.status == SessionStatus.ACTIVE)
            )
            return {sid: gid for sid, gid in rows.all()}

    async def still_active(self, session_ids: Collection[str]) -> set[str]:
        """Which of ``session_ids`` are active right now (asked just before a
        leftover grant is deleted, so a launch in flight keeps its grant)."""
        if not session_ids:
            return set()
        async with self._db() as db:
            rows = await db.scalars(
                select(Session.id).where(
                    Session.id.in_(list(session_ids)), Session.status == SessionStatus.ACTIVE
                )
            )
            return set(rows.all())

    async def interrupted_launches(self, cutoff: datetime) -> list[str]:
        """Active sessions still ``pending`` with no grant id that started before
        ``cutoff``: their launch never finished."""
        async with self._db() as db:
            rows = await db.scalars(
                select(Session.id).where(
                    Session.status == SessionStatus.ACTIVE,
                    Session.tunnel_status == TunnelStatus.PENDING,
                    Session.grant_id.is_(None),
                    Session.started_at < cutoff,
                )
            )
            return list(rows.all())

    async def pending_revokes(self, limit: int = 100) -> Sequence[str]:
        """Ended sessions whose grant is not yet removed, oldest end first."""
        async with self._db() as db:
            rows = await db.scalars(
                select(Session.id)
                .where(Session.status != SessionStatus.ACTIVE, Session.revoked.is_(False))
                .order_by(Session.ended_at)
                .limit(limit)
            )
            return list(rows.all())
