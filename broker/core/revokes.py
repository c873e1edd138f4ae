"""Closing the network grant of ended sessions, and the audit of every revoke.

`Revokes` is the part of `broker.core.sessions.SessionService` that removes
grants: right after a session ends (`revoke_ended`), again from the database
while the provider fails (`retry_revokes`), and the reconciler's removals of
leftover grants (`note_reconciled`). Rules:

- Every revoke of a NetBird grant writes a ``revoke_tunnel`` audit row
  (``outcome`` ``revoked`` or ``failed``), whichever path ran it.
- An ended session's tunnel never stays ``pending`` or ``encrypted``: it shows
  ``revoked`` once its grant is removed, ``failed`` while removing it fails
  and for a launch whose grant never came (refused or interrupted; the cause
  is in its ``launch_failed`` entry). ``direct`` sessions stay ``direct``.
- A revoke is recorded only against the grant id it was made for: a grant
  recorded meanwhile (a launch racing the end) is still open and gets its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import async_sessionmaker

from broker.core import audit
from broker.core.audit import Action, Actor
from broker.core.db import DbSession
from broker.core.models import EndReason, Session, SessionStatus
from broker.core.queries import SessionQueries
from tunnels.base import TunnelError, TunnelProvider, TunnelStatus
from tunnels.direct import DirectProvider

log = logging.getLogger("broker.core.sessions")


class Revokes:
    """Mixed into `SessionService`, which sets these attributes."""

    queries: SessionQueries
    _db: async_sessionmaker[DbSession]
    _tunnels: TunnelProvider
    _clock: Callable[[], datetime]

    async def revoke_ended(self, session_id: str, ended: Session | None = None) -> bool:
        """Remove the grant of an ended session. True when done; on failure the
        row keeps ``revoked = false`` and `retry_revokes` tries again later.
        ``ended``: the row as its end just returned it (saves reading it again)."""
        session = ended if ended is not None else await self.queries.get(session_id)
        if session is None or session.status == SessionStatus.ACTIVE or session.revoked:
            return True
        try:
            await self._tunnels.revoke(session_id, session.grant_id)
        except TunnelError as exc:
            await self._revoke_failed(session, exc.message)
            log.warning("revoke of session %s failed, will retry: %s", session_id, exc.message)
            return False
        await self._mark_revoked(session)
        return True

    async def retry_revokes(self) -> int:
        """One pass over ended sessions whose grant is not yet removed; returns
        how many are still pending."""
        left = 0
        for session_id in await self.queries.pending_revokes():
            if not await self.revoke_ended(session_id):
                left += 1
        return left

    async def note_reconciled(self, session_id: str, grant_id: str) -> None:
        """The reconciler deleted ``grant_id``, a leftover grant of a session
        that is not active: audit it. (A row still waiting for its own revoke
        finishes it in `retry_revokes`, where the provider says it is gone.)"""
        async with self._db() as db, db.begin():
            audit.record(
                db,
                Action.REVOKE_TUNNEL,
                Actor.system(),
                self._clock(),
                session_id=session_id,
                grant_id=grant_id,
                outcome="revoked",
                by="reconciler",
            )

    async def _mark_revoked(self, session: Session) -> None:
        """Record the grant of ``session`` (as read before its revoke) removed,
        with its audit row; nothing changes when the row got another grant id
        meanwhile (that grant's own revoke follows)."""
        direct = session.tunnel_provider == DirectProvider.name
        status = TunnelStatus.REVOKED
        if direct:
            status = TunnelStatus.DIRECT
        elif session.grant_id is None and session.end_reason == EndReason.LAUNCH_FAILED:
            status = TunnelStatus.FAILED
        async with self._db() as db, db.begin():
            result = await db.execute(
                update(Session)
                .where(
                    Session.id == session.id,
                    Session.revoked.is_(False),
                    Session.grant_id.is_not_distinct_from(session.grant_id),
                )
                .values(revoked=True, tunnel_status=status)
            )
            if result.rowcount and not direct:  # type: ignore[attr-defined]
                self._audit_revoke(db, session, outcome="revoked")

    async def _revoke_failed(self, session: Session, error: str) -> None:
        """Audit a failed revoke; the ended session's tunnel shows ``failed``
        until a retry removes the grant."""
        async with self._db() as db, db.begin():
            if session.tunnel_provider != DirectProvider.name:
                await db.execute(
                    update(Session)
                    .where(Session.id == session.id, Session.revoked.is_(False))
                    .values(tunnel_status=TunnelStatus.FAILED)
                )
            self._audit_revoke(db, session, outcome="failed", error=error)

    def _audit_revoke(self, db: DbSession, session: Session, **details: str) -> None:
        audit.record(
            db,
            Action.REVOKE_TUNNEL,
            Actor.system(),
            self._clock(),
            session_id=session.id,
            workspace_id=session.workspace_id,
            grant_id=session.grant_id,
            **details,
        )
