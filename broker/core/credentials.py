"""What a credential proves: the one place that decides.

The broker accepts three kinds of credential, and nothing else:

- a **bearer JWT** from the identity provider (`broker.core.auth`): proves a
  user; it is told apart from the others by its shape (two dots);
- a **viewer token**, issued at launch (`issue_viewer_token`) and stored only
  as a hash, bound to one session and its owner: proves that session, for as
  long as it is active and until a relaunch of it issues the next one (a
  session holds one; the retention pruner removes it some time after the
  session ended); an html5 session's token can be traded once for
- an **app cookie** (`Credentials.exchange_viewer_token`), stored only as a
  hash, bound to the same session and owner: proves that session on its app
  origin, for as long as it is active.

Rules hold at every connect, not only at launch. Whatever opens a stream
(the viewer tunnel, ``/viewer/<id>/info``, the app-cookie exchange, every
request an app cookie signs) must satisfy the workspace's current
``allowed_roles`` and ``require_mfa`` (`broker.core.auth.require_entitled`,
`Forbidden` otherwise) for the user at that moment:

- with a JWT, what that JWT proves now;
- with a viewer token, what the JWT that launched it proved (its roles, admin
  flag and MFA are recorded with it), and only until that JWT's ``exp``: a
  viewer token never proves more, or for longer, than the credential it was
  issued for. Roles taken away at the identity provider therefore bite at
  the next connect once the launching JWT has expired; a change of the
  workspace's rules bites at the next connect at once. After the launching
  JWT's ``exp`` the token can still end its own session (disconnect);
- with an app cookie, what the viewer token it was traded for recorded. The
  cookie lives with its session (like an open viewer stream, it is not cut
  when the launching JWT expires), but every request is held against the
  workspace's current rules.

A credential that proves a user, presented for a session that is not theirs
(or does not exist), is `NotFound`: it is no failed sign-in.

The web edge reads credentials out of requests and maps the errors raised
here (`Unauthorized`, `Forbidden`, `NotFound`) to answers; it decides nothing
about them itself.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import jwt
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from broker.config import Settings
from broker.core import audit
from broker.core.audit import Action, Actor
from broker.core.auth import Authenticator, Entitlement, Principal, require_entitled
from broker.core.db import DbSession, single_read
from broker.core.errors import BrokerError, Forbidden, NotFound, Unauthorized
from broker.core.models import (
    AppCookie,
    Session,
    SessionStatus,
    ViewerToken,
    looks_like_session_id,
    utcnow,
)
from broker.core.queries import SESSION_NOT_FOUND

MAX_SUBJECT = 255
MAX_APP_COOKIES = 8

# A viewer token's row and its session's, in one indexed round trip (each by
# its primary key); built once, as it runs at every viewer connect.
TOKEN_AND_SESSION = (
    select(ViewerToken, Session)
    .join(Session, Session.id == ViewerToken.session_id)
    .where(ViewerToken.token_hash == bindparam("token_hash"))
)


def hash_token(token: str) -> str:
    """How viewer tokens and app cookies are stored: never in the clear."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random viewer token or app cookie value."""
    return secrets.token_urlsafe(32)


def is_jwt(token: str) -> bool:
    """Whether ``token`` has a JWT's shape (not whether it verifies)."""
    return token.count(".") == 2


async def issue_viewer_token(
    db: DbSession,
    token: str,
    session: Session,
    now: datetime,
    who: Principal,
    *,
    replace: bool = True,
) -> None:
    """Store ``token`` (only its hash) as the viewer token of ``session``, bound
    to its owner, in the caller's transaction; it records what ``who`` (the
    launching JWT) proves and expires with it.

    A session holds one viewer token at a time: this deletes the one before
    (a relaunch returning the running session hands out a fresh link and the
    old link stops working), so relaunches never pile up rows; ``replace=False``
    skips that for a session inserted in this transaction. Concurrent
    relaunches must hold the session row (``SELECT ... FOR UPDATE``) so the
    last one's token is the one left."""
    if replace:
        await db.execute(delete(ViewerToken).where(ViewerToken.session_id == session.id))
    db.add(
        ViewerToken(
            token_hash=hash_token(token),
            session_id=session.id,
            user_id=session.user_id,
            created_at=now,
            roles=sorted(who.roles),
            is_admin=who.is_admin,
            mfa_verified=who.mfa_verified,
            expires_at=who.expires_at,
        )
    )


def recorded(row: ViewerToken | AppCookie) -> Entitlement:
    """The entitlement a viewer token or app cookie recorded at issue."""
    roles = row.roles if isinstance(row.roles, list) else []
    return Entitlement(
        frozenset(r for r in roles if isinstance(r, str)),
        bool(row.is_admin),
        bool(row.mfa_verified),
    )


@dataclass(frozen=True, slots=True)
class SessionUser:
    """The user a credential speaks for."""

    user_id: str
    email: str


class Credentials:
    """Answers what a credential proves, checked against the database each time
    (a viewer token or app cookie dies with its session). Database errors
    propagate; so do `Authenticator` errors other than a refused token (a key
    source that cannot be reached is `Unavailable`)."""

    def __init__(
        self,
        db: async_sessionmaker[DbSession],
        auth: Authenticator,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._auth = auth
        self._settings = settings.auth
        self._workspace = settings.workspace
        self._clock = clock

    # -- bearer JWTs -------------------------------------------------------------

    async def principal(self, token: str) -> Principal:
        """The user a bearer JWT proves; viewer tokens and anything else are
        `Unauthorized` ("Invalid token")."""
        if not is_jwt(token):
            raise Unauthorized("Invalid token")
        return await self._auth.authenticate(token)

    async def verifies(self, token: str) -> bool:
        """Whether ``token`` is a JWT that verifies now (no error raised)."""
        try:
            await self._auth.authenticate(token)
        except BrokerError:
            return False
        return True

    def claimed_subject(self, token: str) -> str | None:
        """The ``sub`` a JWT names, unverified: only ever a rate-limit key."""
        if not token or len(token) > self._settings.max_token_bytes or not is_jwt(token):
            return None
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError):
            return None
        sub = claims.get("sub") if isinstance(claims, dict) else None
        if not isinstance(sub, str) or not sub or len(sub) > MAX_SUBJECT:
            return None
        return sub

    def _names_broker(self, token: str) -> bool:
        """Whether a JWT is meant for the broker (its issuer and audience),
        signature unchecked."""
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return False
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        return claims.get("iss") == self._settings.issuer and self._settings.audience in audiences

    # -- viewer tokens -----------------------------------------------------------

    async def _viewer_token(self, token: str) -> tuple[ViewerToken, Session] | None:
        """A viewer token's row and the session it was issued for, active or not;
        None for an unknown token."""
        async with self._db() as db:
            await single_read(db)
            result = await db.execute(TOKEN_AND_SESSION, {"token_hash": hash_token(token)})
            found = result.first()
        if found is None:
            return None
        row, session = found
        if session.user_id != row.user_id:
            return None
        return row, session

    def _expired(self, row: ViewerToken) -> bool:
        """Whether the JWT a viewer token was issued for has expired."""
        return row.expires_at is not None and row.expires_at <= self._clock()

    def _entitled(self, who: Entitlement | Principal, session: Session) -> None:
        """`Forbidden` unless ``who`` may use ``session``'s workspace now."""
        require_entitled(who, self._workspace(session.workspace_id), self._settings)

    async def session_of_viewer_token(self, token: str) -> Session | None:
        """The session a viewer token was issued for, active or not; None for an
        unknown token."""
        found = await self._viewer_token(token)
        return found[1] if found else None

    async def session_for_viewer_token(self, token: str) -> Session:
        """The active session a viewer token belongs to; `Unauthorized` otherwise
        (unknown token, or its session has ended: tokens die with their session)."""
        session = await self.session_of_viewer_token(token)
        if session is None or session.status != SessionStatus.ACTIVE:
            raise Unauthorized("Invalid or expired viewer token")
        return session

    async def viewer_session(self, session_id: str, token: str) -> Session:
        """The session ``token`` may view: ``session_id`` when the token is one of
        its viewer tokens or a JWT of its owner. Ended sessions are returned too
        (the caller decides). An active one must be the user's to use now
        (`Forbidden`: the workspace's roles or MFA rule refuse them; a viewer
        token past its launching JWT's ``exp`` is `Unauthorized`). A valid JWT,
        or the live viewer token of another session, is `NotFound`; anything
        else `Unauthorized`."""
        if not token:
            raise Unauthorized("Invalid viewer credential")
        if is_jwt(token):
            who = await self._auth.authenticate(token)
            if not looks_like_session_id(session_id):
                raise NotFound(SESSION_NOT_FOUND)
            async with self._db() as db:
                await single_read(db)
                session = await db.get(Session, session_id)
            if session is None or session.user_id != who.user_id:
                raise NotFound(SESSION_NOT_FOUND)
            if session.status == SessionStatus.ACTIVE:
                self._entitled(who, session)
            return session
        found = await self._viewer_token(token)
        if found is None:
            raise Unauthorized("Invalid viewer credential")
        row, session = found
        live = session.status == SessionStatus.ACTIVE and not self._expired(row)
        if session.id != session_id:
            if live:
                raise NotFound(SESSION_NOT_FOUND)
            raise Unauthorized("Invalid viewer credential")
        if session.status == SessionStatus.ACTIVE:
            if not live:
                raise Unauthorized("Invalid or expired viewer token")
            self._entitled(recorded(row), session)
        return session

    async def session_user(self, session_id: str, token: str) -> SessionUser:
        """Who may act on session ``session_id`` with ``token``: the user a JWT
        proves (whether the session is theirs is the caller's check), or the
        owner of the active session a viewer token belongs to, which must be
        ``session_id`` (else `NotFound`). `Unauthorized` for a refused token."""
        if is_jwt(token):
            who = await self._auth.authenticate(token)
            return SessionUser(who.user_id, who.email)
        session = await self.session_for_viewer_token(token)
        if session.id != session_id:
            raise NotFound(SESSION_NOT_FOUND)
        return SessionUser(session.user_id, session.user_email)

    async def exchange_viewer_token(
        self, token: str, session_id: str, cookie: str, *, client_ip: str | None = None
    ) -> Session:
        """Trade ``token``, the viewer token of the html5 session ``session_id``,
        for the app cookie ``cookie`` (stored hashed, bound to the session and
        its user). A token is exchanged once; a second try is `Unauthorized`
        with code ``token_used``. Also `Unauthorized`: an unknown token, one of
        another session, an ended session, a token past its launching JWT's
        ``exp``; `Forbidden`: not an html5 workspace, or the workspace's current
        rules refuse what the token recorded. A refusal changes nothing."""
        now = self._clock()
        async with self._db() as db, db.begin():
            row = await db.get(ViewerToken, hash_token(token))
            session = await db.get(Session, row.session_id) if row else None
            if (
                row is None
                or session is None
                or session.id != session_id
                or session.status != SessionStatus.ACTIVE
                or session.user_id != row.user_id
                or self._expired(row)
            ):
                raise Unauthorized("Invalid or expired viewer token")
            if session.workspace_type != "html5":
                raise Forbidden("This session's workspace is not an HTML5 web app")
            entitlement = recorded(row)
            self._entitled(entitlement, session)
            won = await db.scalar(
                update(ViewerToken)
                .where(ViewerToken.token_hash == row.token_hash, ViewerToken.exchanged_at.is_(None))
                .values(exchanged_at=now)
                .returning(ViewerToken.token_hash)
            )
            if won is None:
                raise Unauthorized("This viewer link was already used", code="token_used")
            db.add(
                AppCookie(
                    token_hash=hash_token(cookie),
                    session_id=session.id,
                    user_id=session.user_id,
                    created_at=now,
                    roles=sorted(entitlement.roles),
                    is_admin=entitlement.is_admin,
                    mfa_verified=entitlement.mfa_verified,
                )
            )
            audit.record(
                db,
                Action.OPEN_APP,
                Actor(session.user_id, session.user_email, client_ip),
                now,
                session_id=session.id,
                workspace_id=session.workspace_id,
            )
        return session

    # -- app cookies -------------------------------------------------------------

    async def app_session(self, session_id: str, cookies: Sequence[str]) -> Session:
        """The active session ``session_id`` when one of ``cookies`` (the app-cookie
        values a request carried; the first few are tried) was issued for it,
        and the workspace's current rules still allow what the cookie recorded
        (`Forbidden` otherwise). Otherwise `Unauthorized`, code
        ``session_ended`` (a cookie of it, but it has ended) or ``not_signed_in``."""
        hashes = [hash_token(c) for c in cookies[:MAX_APP_COOKIES]]
        ended = False
        refused: Forbidden | None = None
        if hashes and looks_like_session_id(session_id):
            async with self._db() as db:
                rows = await db.execute(
                    select(AppCookie, Session)
                    .join(Session, Session.id == AppCookie.session_id)
                    .where(AppCookie.token_hash.in_(hashes), AppCookie.session_id == session_id)
                )
                for cookie, session in rows.all():
                    if session.user_id != cookie.user_id:
                        continue
                    if session.status != SessionStatus.ACTIVE:
                        ended = True
                        continue
                    try:
                        self._entitled(recorded(cookie), session)
                    except Forbidden as exc:
                        refused = exc
                        continue
                    return session
        if refused is not None:
            raise refused
        if ended:
            raise Unauthorized("This workspace session has ended", code="session_ended")
        raise Unauthorized("Not signed in to this workspace", code="not_signed_in")

    # -- anything --------------------------------------------------------------

    async def is_broker_credential(self, value: str, app_cookies: Sequence[str]) -> bool:
        """Whether ``value`` (a bearer value) is one of the broker's own
        credentials, which a proxied app must never see: a JWT for the broker's
        issuer and audience (signature unchecked), one of ``app_cookies`` (the
        request's app-cookie values), or the viewer token of an active session."""
        if is_jwt(value):
            return self._names_broker(value)
        if value in app_cookies:
            return True
        try:
            await self.session_for_viewer_token(value)
        except Unauthorized:
            return False
        return True
