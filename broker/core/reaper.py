"""The reaper: ends sessions past their limits, and keeps this replica's open
streams in step with the database.

Limits (per workspace, with global defaults; 0 or negative: none):

- maximum duration since launch  -> ``max_duration`` (status ``disconnected``);
- no viewer attached for N s     -> ``idle_timeout``;
- no user input for N s          -> ``idle_timeout``;
- guacd workspaces only: viewers tried to connect and none reached a first
  ``sync`` for ``connect_failed_seconds``, counted from the first failed try
  (`SessionService.connect_failed`; a success clears it) -> ``connect_failed``
  (status ``terminated``). Sessions nobody tried to view keep the idle limits.

Every pass is safe with several replicas running it: ending is a conditional
update, so each due session is ended once, by whichever replica gets there
first, and its viewers close with SESSION_TIMEOUT wherever they are. The
broker runs `end_due` in one process per pass (`broker.core.turns`), and
`sweep_streams` in every process: each holds its own streams. A pass
that fails (database briefly unavailable) is simply retried at the next
interval, so no session outlives its deadline by more than about one interval.

The stream sweep (each pass, over `broker.core.streams.OpenStreams`) marks
the sessions whose streams this replica holds as watched (the
idle-without-viewer clock: a guacd viewer, or an HTML5 app's request or
WebSocket open at that moment) and closes the streams whose session ended
elsewhere, so a lost notification delays a close by one interval, never
forever.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from broker.config import LimitSettings, Settings, WorkspaceConfig, effective_limit
from broker.core.audit import Actor
from broker.core.models import EndReason, utcnow
from broker.core.queries import Deadlines
from broker.core.sessions import SessionService
from broker.core.streams import OpenStreams, ending_for
from broker.core.workspaces import uses_guacd

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Due:
    session_id: str
    reason: EndReason
    why: str


def due_reason(
    limits: LimitSettings,
    overrides: tuple[int, int, int],
    now: datetime,
    started: datetime,
    last_input: datetime,
    last_viewer: datetime,
    failing_since: datetime | None = None,
) -> tuple[EndReason, str] | None:
    """Which limit a session has passed, if any (pure). ``failing_since`` is
    the first failed connect of a guacd session (None: no failure, or not guacd)."""
    max_session, no_viewer, no_input = (
        effective_limit(overrides[0], limits.max_session_seconds),
        effective_limit(overrides[1], limits.idle_no_viewer_seconds),
        effective_limit(overrides[2], limits.idle_no_input_seconds),
    )
    if max_session and (now - started).total_seconds() >= max_session:
        return EndReason.MAX_DURATION, f"reached the maximum duration of {max_session} s"
    failing = limits.connect_failed_seconds
    if failing > 0 and failing_since is not None:
        if (now - failing_since).total_seconds() >= failing:
            return EndReason.CONNECT_FAILED, f"no viewer could connect for {failing} s"
    if no_viewer and (now - last_viewer).total_seconds() >= no_viewer:
        return EndReason.IDLE_TIMEOUT, f"no viewer attached for {no_viewer} s"
    if no_input and (now - last_input).total_seconds() >= no_input:
        return EndReason.IDLE_TIMEOUT, f"no input for {no_input} s"
    return None


def deadlines(settings: Settings, now: datetime) -> list[Deadlines]:
    """The reaper's question per group of workspaces sharing the same limits:
    the configured workspaces whose own limits differ from the defaults, by
    their limits, then every other workspace (unconfigured ones included)
    with the defaults."""
    limits = settings.limits
    default = _limits(limits, (0, 0, 0))
    groups: dict[tuple[int, int, int], set[str]] = {}
    for ws in settings.workspaces:
        own = _limits(limits, _overrides(ws))
        if own != default:
            groups.setdefault(own, set()).add(ws.id)
    special = frozenset(i for ids in groups.values() for i in ids)
    out = [_deadlines(frozenset(ids), own, now) for own, ids in groups.items()]
    out.append(_deadlines(special, default, now, others=True))
    return out


def _overrides(ws: WorkspaceConfig | None) -> tuple[int, int, int]:
    if ws is None:
        return (0, 0, 0)
    return (ws.max_session_seconds, ws.idle_no_viewer_seconds, ws.idle_no_input_seconds)


def _limits(limits: LimitSettings, overrides: tuple[int, int, int]) -> tuple[int, int, int]:
    return (
        effective_limit(overrides[0], limits.max_session_seconds),
        effective_limit(overrides[1], limits.idle_no_viewer_seconds),
        effective_limit(overrides[2], limits.idle_no_input_seconds),
    )


def _deadlines(
    ids: frozenset[str], own: tuple[int, int, int], now: datetime, *, others: bool = False
) -> Deadlines:
    def before(seconds: int) -> datetime | None:
        return now - timedelta(seconds=seconds) if seconds else None

    return Deadlines(ids, others, before(own[0]), before(own[1]), before(own[2]))


async def due_sessions(sessions: SessionService, settings: Settings, now: datetime) -> list[Due]:
    """The sessions past a limit, read by one statement that returns only them
    (`broker.core.queries.reap_statement`), each then judged by `due_reason`."""
    failing = None
    if settings.limits.connect_failed_seconds > 0:
        guacd = [ws.id for ws in settings.workspaces if uses_guacd(ws)]
        failing = (guacd, now - timedelta(seconds=settings.limits.connect_failed_seconds))
    found = await sessions.queries.reap_candidates(deadlines(settings, now), failing)
    configured = {ws.id: ws for ws in settings.workspaces}
    due = []
    for sid, workspace_id, started, last_input, last_viewer, since in found:
        ws = configured.get(workspace_id)
        if ws is None or not uses_guacd(ws):
            since = None
        why = due_reason(
            settings.limits, _overrides(ws), now, started, last_input, last_viewer, since
        )
        if why is not None:
            due.append(Due(sid, *why))
    return due


async def reap_once(
    sessions: SessionService,
    settings: Settings,
    streams: OpenStreams,
    now: datetime | None = None,
) -> list[Due]:
    """One pass: sweep this replica's streams, then end every due session.
    ``now`` is for tests; the default is the current time."""
    now = now or utcnow()
    await sweep_streams(sessions, streams, now)
    return await end_due(sessions, settings, now)


async def end_due(sessions: SessionService, settings: Settings, now: datetime) -> list[Due]:
    """End every session past a limit at ``now``; the ones this call ended."""
    ended = []
    for item in await due_sessions(sessions, settings, now):
        if await sessions.end(item.session_id, item.reason, Actor.system(), limit=item.why):
            log.info("session %s ended: %s", item.session_id, item.why)
            ended.append(item)
    return ended


async def sweep_streams(sessions: SessionService, streams: OpenStreams, now: datetime) -> None:
    """Mark the sessions with streams here as watched at ``now``; end the
    streams of those that are no longer active."""
    held = streams.session_ids()
    if not held:
        return
    await sessions.touch_viewers(held, at=now)
    for session_id, reason in (await sessions.queries.end_reasons(held)).items():
        streams.end_session(session_id, ending_for(reason))
