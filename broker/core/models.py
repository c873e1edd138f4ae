"""Database tables (SQLAlchemy 2 declarative). Schema changes go through Alembic
migrations in ``broker/migrations``; this module and the newest migration must agree
(a test compares them, partial indexes' predicates included).

Every listing reads an index in its own order (newest first, a row-value
keyset for the next page), and the work done in the background or per scrape
reads partial indexes that hold only the rows it wants (active sessions,
grants still to revoke), so none of it grows with the history kept.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    and_,
    literal_column,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tunnels.base import TunnelStatus


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend
    (SQLite keeps no zone; PostgreSQL columns are ``timestamptz``)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class SessionStatus(StrEnum):
    ACTIVE = "active"
    DISCONNECTED = "disconnected"
    TERMINATED = "terminated"


class EndReason(StrEnum):
    """Why a session ended; decides its status (DESIGN.md section 1)."""

    USER_DISCONNECT = "user_disconnect"
    IDLE_TIMEOUT = "idle_timeout"
    MAX_DURATION = "max_duration"
    WORKSPACE_STOP = "workspace_stop"
    ADMIN_TERMINATE = "admin_terminate"
    LAUNCH_FAILED = "launch_failed"
    CONNECT_FAILED = "connect_failed"
    TUNNEL_LOST = "tunnel_lost"
    SYSTEM = "system"

    @property
    def status(self) -> SessionStatus:
        if self in (EndReason.USER_DISCONNECT, EndReason.IDLE_TIMEOUT, EndReason.MAX_DURATION):
            return SessionStatus.DISCONNECTED
        return SessionStatus.TERMINATED


class Base(DeclarativeBase):
    pass


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(16))
    protocol: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


UNKNOWN_IP = "10.0.0.1"
"""A session's ``ip_address`` until its tunnel grant is recorded: for display
only, never connected to (see `Session.connect_target`)."""


@dataclass(frozen=True, slots=True)
class ConnectTarget:
    """Where guacd or the HTML5 proxy connects for one session: the address and
    port its recorded tunnel grant gave."""

    host: str
    port: int


# The predicates of the partial indexes on ``sessions``. A query reaches such an
# index only when its WHERE clause holds the same predicate, literally (SQLite
# matches the expression; a bound parameter in its place would also hide it
# from PostgreSQL's generic plans): build queries with `is_active` and
# `is_pending_revoke`, which render exactly these.
ACTIVE_PREDICATE = "status = 'active'"
PENDING_REVOKE_PREDICATE = "status != 'active' AND revoked = false"


class Session(Base):
    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255))
    user_email: Mapped[str] = mapped_column(String(320))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    workspace_name: Mapped[str] = mapped_column(String(200))
    workspace_type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    ip_address: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer, default=0)
    # The connect target: empty until the tunnel grant is recorded.
    target_host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    target_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tunnel_status: Mapped[str] = mapped_column(String(16))
    tunnel_provider: Mapped[str] = mapped_column(String(16))
    grant_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    mfa_verified: Mapped[bool] = mapped_column(Boolean)
    client_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Last time a viewer was seen attached (connect, periodic heartbeat, detach).
    last_viewer_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Viewers' tries to reach the desktop (guacd workspaces): the last failure's
    # text, and when the first failure since the last success happened (the
    # connect_failed clock). Both cleared when a viewer reaches a first `sync`.
    last_connect_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    connect_failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        # At most one active session per workspace, enforced by the database;
        # also what every question about all active sessions reads.
        Index(
            "uq_sessions_active_workspace",
            "workspace_id",
            unique=True,
            sqlite_where=text(ACTIVE_PREDICATE),
            postgresql_where=text(ACTIVE_PREDICATE),
        ),
        # Active sessions newest first: everyone's (an admin's list) and a
        # user's (their list, the per-user limit).
        Index(
            "ix_sessions_active_started_id",
            "started_at",
            "id",
            sqlite_where=text(ACTIVE_PREDICATE),
            postgresql_where=text(ACTIVE_PREDICATE),
        ),
        Index(
            "ix_sessions_active_user_started_id",
            "user_id",
            "started_at",
            "id",
            sqlite_where=text(ACTIVE_PREDICATE),
            postgresql_where=text(ACTIVE_PREDICATE),
        ),
        # Ended sessions whose grant is still to be removed (the revoke retry).
        Index(
            "ix_sessions_pending_revoke",
            "ended_at",
            sqlite_where=text(PENDING_REVOKE_PREDICATE),
            postgresql_where=text(PENDING_REVOKE_PREDICATE),
        ),
        # Newest first, page by page: everyone's, a workspace's, a user's (by
        # id or by email), one status's.
        Index("ix_sessions_started_id", "started_at", "id"),
        Index("ix_sessions_status_started_id", "status", "started_at", "id"),
        Index("ix_sessions_workspace_started_id", "workspace_id", "started_at", "id"),
        Index("ix_sessions_user_started_id", "user_id", "started_at", "id"),
        Index("ix_sessions_email_started_id", "user_email", "started_at", "id"),
        # The retention pruner's range of ended sessions past their age.
        Index("ix_sessions_ended_at", "ended_at"),
    )

    @property
    def connect_target(self) -> ConnectTarget | None:
        """Where the upstreams may connect: the recorded grant's address, or
        None while no grant is recorded or once it failed or was revoked. A
        grant whose peer is not connected yet (``pending``) may be tried."""
        if self.target_host is None or self.target_port is None:
            return None
        if self.tunnel_status in (TunnelStatus.FAILED, TunnelStatus.REVOKED):
            return None
        return ConnectTarget(self.target_host, self.target_port)


def is_active() -> ColumnElement[bool]:
    """``status = 'active'``, as the partial indexes on active sessions say it."""
    return Session.status == literal_column("'active'")


def is_pending_revoke() -> ColumnElement[bool]:
    """Ended with the grant not yet removed, as ``ix_sessions_pending_revoke`` says it."""
    return and_(
        Session.status != literal_column("'active'"), Session.revoked == literal_column("false")
    )


class SessionCounter(Base):
    """Running totals kept beside the rows they count, so reading one costs the
    same at any table size and every replica reads the same value. Only
    `broker.core.counters` writes them, in the transaction of the change
    counted. ``name`` says what is counted (``ended``: sessions ended, by
    ``reason``, an `EndReason`)."""

    __tablename__ = "session_counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class ViewerToken(Base):
    __tablename__ = "viewer_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    user_id: Mapped[str] = mapped_column(String(255))
    # Indexed for the retention pruner (the credentials older than its cutoff).
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # Set when the token was exchanged for an HTML5 app cookie (allowed once).
    exchanged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # What the launching JWT proved (`broker.core.auth.Entitlement`), held against
    # the workspace's rules at every connect; the token dies at that JWT's ``exp``.
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    mfa_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AppCookie(Base):
    """The credential of an HTML5 workspace's origin (`broker.web.apps`): a random
    cookie value, stored only as a hash, bound to one session and its user. It
    is valid only while that session is active, and carries the entitlement of
    the viewer token it was traded for (held against the workspace's rules at
    every request)."""

    __tablename__ = "app_cookies"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    user_id: Mapped[str] = mapped_column(String(255))
    # Indexed for the retention pruner (the credentials older than its cutoff).
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    mfa_verified: Mapped[bool] = mapped_column(Boolean, default=False)


class AuditEvent(Base):
    """Append-only: the application inserts rows and never updates them; only
    the retention pruner deletes them, past ``retention.audit_days``, leaving
    an ``audit_checkpoint`` entry with the hash of what it removed."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    action: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    user_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    client_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    session_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    workspace_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)

    __table_args__ = (
        # Newest first (by id) for one user (by id or by email) or one action.
        Index("ix_audit_events_user_id_id", "user_id", "id"),
        Index("ix_audit_events_email_id", "user_email", "id"),
        Index("ix_audit_events_action_id", "action", "id"),
    )


class RateLimitState(Base):
    """A rate-limit bucket shared by every worker and replica
    (`broker.core.ratebuckets`): ``tokens`` left at ``at``, full again at
    ``full_at`` (seconds since the epoch, by the database's clock). A row
    full again is the same as none, and is pruned. Unlogged on PostgreSQL:
    it is lost on a crash, which only refills every bucket."""

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    at: Mapped[float] = mapped_column(Float)
    full_at: Mapped[float] = mapped_column(Float)


def utcnow() -> datetime:
    return datetime.now(UTC)


def looks_like_session_id(value: str) -> bool:
    """Whether ``value`` has the shape of a session id (a UUID in its 36-character
    form); anything else names no session, so callers answer "not found"
    without asking the database."""
    try:
        return str(uuid.UUID(value)) == value.lower() and len(value) == 36
    except ValueError:
        return False
