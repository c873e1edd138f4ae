"""The session state machine: launch, end, and the network grant that lives exactly
as long as a session.

Rules this module keeps (and the tests check):

- Every state change is one conditional ``UPDATE ... WHERE status = 'active'``
  with its audit row in the same transaction; zero rows means someone else
  won, never a silent overwrite.
- Slow network work (the tunnel grant and revoke) happens outside any
  transaction and is idempotent.
- A launch whose grant fails leaves no active session: the row is ended
  ``terminated``/``launch_failed`` and a ``launch_failed`` audit row says why.
- A grant whose revoke fails is retried from the database
  (``status != 'active' AND revoked = false``), so a restart loses nothing.
- Each end adds one to the ended-sessions total of its reason
  (`broker.core.counters`) in its own transaction.

Reads live in `broker.core.queries` (``SessionService.queries``); what a viewer
token or app cookie proves, in `broker.core.credentials`. No HTTP here:
callers translate the `broker.core.errors` raised.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, literal, text, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker

from broker.config import Settings, WorkspaceConfig
from broker.core import audit, counters
from broker.core.audit import Action, Actor
from broker.core.auth import Principal
from broker.core.credentials import issue_viewer_token, new_token
from broker.core.db import DbSession
from broker.core.errors import Conflict, Forbidden, TooManyRequests, Unavailable, UpstreamFailed
from broker.core.events import EventBus, SessionEnded
from broker.core.models import (
    UNKNOWN_IP,
    EndReason,
    Session,
    SessionStatus,
    UTCDateTime,
    utcnow,
)
from broker.core.queries import (
    SessionQueries,
    active_session_of_workspace,
    count_active_for_user,
)
from broker.core.revokes import Revokes
from broker.core.touches import SessionTouches
from broker.core.workspaces import uses_guacd
from tunnels.base import Grant, Target, TunnelError, TunnelProvider, TunnelStatus
from tunnels.direct import DirectProvider

log = logging.getLogger(__name__)

ACTION_FOR_REASON = {
    EndReason.USER_DISCONNECT: Action.DISCONNECT_SESSION,
    EndReason.WORKSPACE_STOP: Action.STOP_WORKSPACE,
    EndReason.LAUNCH_FAILED: Action.LAUNCH_FAILED,
}


@dataclass(frozen=True, slots=True)
class Launched:
    session: Session
    viewer_token: str
    created: bool


class SessionService(Revokes):
    """The one place where sessions change state (`Revokes`: closing the grants)."""

    def __init__(
        self,
        db: async_sessionmaker[DbSession],
        settings: Settings,
        tunnels: TunnelProvider,
        events: EventBus,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_launch: Callable[[str], None] = lambda outcome: None,
        queries: SessionQueries | None = None,
        guacd_available: Callable[[], bool] = lambda: True,
    ) -> None:
        self.queries = queries or SessionQueries(db)
        self._db = db
        self._settings = settings
        self._tunnels = tunnels
        self._events = events
        self._clock = clock
        self._touches = SessionTouches(db, clock)
        self._on_launch = on_launch
        # Whether some guacd can take a new connection (the broker's pool).
        self._guacd_available = guacd_available

    # -- activity ------------------------------------------------------------
    #
    # What a viewer's connect, input and first frame change on its session is
    # written in batches (`broker.core.touches`): at most one transaction a
    # second for all of them, instead of one or more per connect.

    def note_activity(self, session_id: str) -> None:
        """Record user input on a session (for idle limits), within a second;
        callers throttle it. A failed write only delays the idle clock."""
        self._touches.input(session_id)

    def note_viewer(self, session_id: str) -> None:
        """A viewer attached to or left the session now (idle-without-viewer
        clock), recorded within a second."""
        self._touches.viewer(session_id)

    async def touch_viewers(self, session_ids: Collection[str], at: datetime | None = None) -> None:
        """Viewers are attached to these sessions now (idle-without-viewer clock)."""
        if not session_ids:
            return
        async with self._db() as db, db.begin():
            await db.execute(
                update(Session)
                .where(Session.id.in_(list(session_ids)), Session.status == SessionStatus.ACTIVE)
                .values(last_viewer_at=at or self._clock())
            )

    async def connect_failed(self, session_id: str, error: str) -> None:
        """A viewer's try to reach the desktop failed before its first ``sync``:
        keep ``error`` as the session's last, and start the connect_failed
        clock unless it runs already (`broker.core.reaper`). Written now, not
        batched: the viewer is told after it."""
        self._touches.failed(session_id)
        async with self._db() as db, db.begin():
            await db.execute(
                update(Session)
                .where(Session.id == session_id, Session.status == SessionStatus.ACTIVE)
                .values(
                    last_connect_error=error[:500],
                    connect_failing_since=func.coalesce(
                        Session.connect_failing_since, literal(self._clock(), UTCDateTime())
                    ),
                )
            )

    def note_connected(self, session_id: str) -> None:
        """A viewer reached its first ``sync``: clear the failure and its clock,
        within a second (called from the relay's hot path)."""
        self._touches.connected(session_id)

    async def background_written(self) -> None:
        """Return once the times noted so far are written."""
        await self._touches.flush()

    async def aclose(self) -> None:
        await self._touches.aclose()

    # -- launch ------------------------------------------------------------

    async def launch(
        self, principal: Principal, workspace: WorkspaceConfig, client_ip: str | None
    ) -> Launched:
        """Start (or return the caller's running) session on ``workspace``.

        Raises `Forbidden` when MFA is required and missing, `Unavailable`
        (before anything is written or granted) for a guacd workspace while
        no guacd is healthy, `Conflict` when another user holds the
        workspace, and the tunnel's error (502/503) when the network path
        cannot be opened (then nothing stays active).
        """
        actor = Actor(principal.user_id, principal.email, client_ip)
        if self._settings.auth.require_mfa and not principal.mfa_verified:
            self._on_launch("refused")
            raise Forbidden("Multi-factor authentication is required to launch a workspace")
        if uses_guacd(workspace) and not self._guacd_available():
            self._on_launch("failed")
            raise Unavailable(
                "The remote desktop service (guacd) is unavailable; try again in a few minutes",
                code="guacd_unavailable",
            )
        session, created, token = await self._claim(principal, workspace, actor)
        if not created:
            self._on_launch("reused")
            return Launched(session, token, created=False)
        try:
            session = await self._open_tunnel(session.id, workspace, actor)
        except BaseException:
            self._on_launch("failed")
            raise
        self._on_launch("created")
        return Launched(session, token, created=True)

    async def _claim(
        self, principal: Principal, workspace: WorkspaceConfig, actor: Actor
    ) -> tuple[Session, bool, str]:
        """Insert the active row (the database's unique index makes this the
        claim on the workspace) or find the caller's own running session.
        Returns the session, whether it is new, and a fresh viewer token (on
        a running session it replaces the one issued before)."""
        token = new_token()
        for _ in range(3):
            try:
                session, created = await self._try_claim(principal, workspace, actor, token)
                return session, created, token
            except IntegrityError:
                continue  # a concurrent launch won the index; look again
        raise Conflict("Workspace is in use by another session")

    async def _try_claim(
        self, principal: Principal, workspace: WorkspaceConfig, actor: Actor, token: str
    ) -> tuple[Session, bool]:
        now = self._clock()
        async with self._db() as db, db.begin():
            # FOR UPDATE (PostgreSQL; SQLite transactions are serial anyway):
            # concurrent relaunches replace the viewer token in turn.
            current = await db.scalar(active_session_of_workspace(workspace.id).with_for_update())
            if current is not None:
                if current.user_id != principal.user_id:
                    raise Conflict("Workspace is in use by another session")
                await issue_viewer_token(db, token, current, now, principal)
                return current, False
            await self._check_user_limit(db, principal.user_id)
            session = Session(
                id=str(uuid.uuid4()),
                user_id=principal.user_id,
                user_email=principal.email,
                workspace_id=workspace.id,
                workspace_name=workspace.name,
                workspace_type=workspace.type,
                status=SessionStatus.ACTIVE,
                started_at=now,
                ip_address=UNKNOWN_IP,
                port=workspace.port,
                tunnel_status=TunnelStatus.PENDING,
                tunnel_provider=self._tunnels.name,
                revoked=False,
                mfa_verified=principal.mfa_verified,
                client_ip=actor.client_ip,
                last_activity_at=now,
                last_viewer_at=now,
            )
            db.add(session)
            await db.flush()
            await issue_viewer_token(db, token, session, now, principal, replace=False)
            audit.record(
                db,
                Action.LAUNCH_WORKSPACE,
                actor,
                now,
                session_id=session.id,
                workspace_id=workspace.id,
                workspace_type=workspace.type,
                protocol=workspace.protocol,
                mfa_verified=principal.mfa_verified,
            )
            return session, True

    async def _open_tunnel(
        self, session_id: str, workspace: WorkspaceConfig, actor: Actor
    ) -> Session:
        target = Target(
            workspace.id,
            workspace.host,
            workspace.port,
            peer=workspace.peer or None,
            probe=workspace.probe,
        )
        try:
            grant = await self._tunnels.grant(session_id, target)
        except TunnelError as exc:
            await self._fail_launch(session_id, actor, exc.message)
            error = Unavailable if exc.http_status == 503 else UpstreamFailed
            raise error(
                f"Could not open the network path to the workspace: {exc.message}", code=exc.code
            ) from None
        except BaseException:
            # Cancelled or crashed half-way: end the session, then let it propagate.
            await asyncio.shield(self._fail_launch(session_id, actor, "launch interrupted"))
            raise
        return await self._record_grant(session_id, grant, actor)

    async def _record_grant(self, session_id: str, grant: Grant, actor: Actor) -> Session:
        now = self._clock()
        async with self._db() as db, db.begin():
            result = await db.execute(
                update(Session)
                .where(Session.id == session_id, Session.status == SessionStatus.ACTIVE)
                .values(
                    ip_address=grant.address,
                    port=grant.port,
                    target_host=grant.address,
                    target_port=grant.port,
                    tunnel_status=grant.status,
                    grant_id=grant.grant_id,
                )
                .returning(Session)
            )
            session = result.scalar_one_or_none()
            if session is not None and grant.grant_id:
                audit.record(
                    db,
                    Action.TUNNEL_GRANTED,
                    actor,
                    now,
                    session_id=session_id,
                    workspace_id=session.workspace_id,
                    grant_id=grant.grant_id,
                    address=grant.address,
                    port=grant.port,
                    tunnel_status=str(grant.status),
                )
        if session is None:
            # Ended while the grant was being made: the end's revoke could not
            # see this grant, so record it as open again and close it.
            await self._reopen_grant(session_id, grant.grant_id)
            await self.revoke_ended(session_id)
            raise Conflict("Session ended during launch")
        return session

    async def _reopen_grant(self, session_id: str, grant_id: str | None) -> None:
        """Store the grant of an ended session as not revoked, so `revoke_ended`
        (or, if that fails, `retry_revokes`) removes it."""
        async with self._db() as db, db.begin():
            await db.execute(
                update(Session)
                .where(Session.id == session_id)
                .values(grant_id=grant_id, revoked=False)
            )

    async def _fail_launch(self, session_id: str, actor: Actor, why: str) -> None:
        await self.end(session_id, EndReason.LAUNCH_FAILED, actor, error=why)

    # -- ending ------------------------------------------------------------

    async def end(
        self,
        session_id: str,
        reason: EndReason,
        actor: Actor,
        *,
        owner: str | None = None,
        **details: str,
    ) -> Session | None:
        """End an active session for ``reason`` (only if ``owner``'s, when
        given). Returns the ended row, or None when it was not active (someone
        else ended it first) or not ``owner``'s. A session without a grant to
        remove (the ``direct`` provider's) is marked revoked in the same
        statement: its end needs no second transaction."""
        now = self._clock()
        mine = [Session.user_id == owner] if owner is not None else []
        no_grant = Session.tunnel_provider == DirectProvider.name
        async with self._db() as db, db.begin():
            result = await db.execute(
                update(Session)
                .where(Session.id == session_id, Session.status == SessionStatus.ACTIVE, *mine)
                .values(
                    status=reason.status,
                    ended_at=now,
                    end_reason=reason,
                    revoked=case((no_grant, true()), else_=Session.revoked),
                )
                .returning(Session)
            )
            session = result.scalar_one_or_none()
            if session is None:
                return None
            action = ACTION_FOR_REASON.get(reason, Action.END_SESSION)
            audit.record(
                db,
                action,
                actor,
                now,
                session_id=session_id,
                workspace_id=session.workspace_id,
                reason=str(reason),
                **details,
            )
            await counters.add_ended(db, reason)
            event = SessionEnded(session_id, str(reason))
            await self._events.announce(db, event)
        await self._events.deliver(event)
        await self.revoke_ended(session_id, session)
        return session

    async def disconnect(self, user_id: str, session_id: str, actor: Actor) -> Session:
        """The owner ends their session. Someone else's or a missing one is
        `NotFound`; an already ended one is `Conflict`."""
        ended = await self.end(session_id, EndReason.USER_DISCONNECT, actor, owner=user_id)
        if ended is None:  # not the caller's (NotFound), or no longer active
            await self.queries.get_for_user(user_id, session_id)
            raise Conflict("Session has already ended")
        return ended

    async def stop_workspace(
        self, principal: Principal, workspace: WorkspaceConfig, actor: Actor
    ) -> Session:
        """End the workspace's active session: its owner or an admin only."""
        session = await self.queries.active_in_workspace(workspace.id)
        if session is None:
            raise Conflict("Workspace has no active session")
        if session.user_id != principal.user_id and not principal.is_admin:
            raise Forbidden("Only the session's owner or an admin can stop this workspace")
        ended = await self.end(session.id, EndReason.WORKSPACE_STOP, actor)
        if ended is None:
            raise Conflict("Workspace has no active session")
        return ended

    async def admin_terminate(self, session_id: str, actor: Actor) -> Session:
        """An admin ends any session: `NotFound` when there is none, `Conflict`
        when it has ended already."""
        await self.queries.existing(session_id)
        ended = await self.end(session_id, EndReason.ADMIN_TERMINATE, actor)
        if ended is None:
            raise Conflict("Session has already ended")
        return ended

    async def _check_user_limit(self, db: DbSession, user_id: str) -> None:
        """429 when the user already has the maximum of active sessions. On
        PostgreSQL a per-user advisory lock makes concurrent launches count in
        turn (SQLite transactions are already serial)."""
        limit = self._settings.limits.max_sessions_per_user
        if not limit:
            return
        if (await db.connection()).dialect.name == "postgresql":
            await db.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:user, 0))"), {"user": user_id}
            )
        count = await db.scalar(count_active_for_user(user_id))
        if (count or 0) >= limit:
            raise TooManyRequests(
                f"You already have {count} active sessions, the most allowed; "
                "end one before launching another",
                code="too_many_sessions",
            )

    # -- reconciling ----------------------------------------------------------

    async def mark_tunnel_lost(self, session_id: str, grant_id: str | None) -> bool:
        """An active session's grant vanished at the provider: show ``failed``."""
        now = self._clock()
        async with self._db() as db, db.begin():
            result = await db.execute(
                update(Session)
                .where(
                    Session.id == session_id,
                    Session.status == SessionStatus.ACTIVE,
                    Session.tunnel_status != TunnelStatus.FAILED,
                )
                .values(tunnel_status=TunnelStatus.FAILED)
                .returning(Session.workspace_id)
            )
            workspace_id = result.scalar_one_or_none()
            if workspace_id is None:
                return False
            audit.record(
                db,
                Action.TUNNEL_FAILED,
                Actor.system(),
                now,
                session_id=session_id,
                workspace_id=workspace_id,
                grant_id=grant_id,
                error="the network grant disappeared at the provider",
            )
        return True

    async def end_interrupted_launches(self, older_than: timedelta) -> list[str]:
        """End sessions whose launch never finished (the broker died between
        claiming the workspace and recording the grant): active, still
        ``pending`` with no grant id, older than any launch can take."""
        ended = []
        for session_id in await self.queries.interrupted_launches(self._clock() - older_than):
            if await self.end(
                session_id, EndReason.LAUNCH_FAILED, Actor.system(), error="launch interrupted"
            ):
                ended.append(session_id)
        return ended
