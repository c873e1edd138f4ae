"""The tunnel reconciler: the periodic pass that makes the provider's grants
match the sessions, so that no crash leaves a door open for long.

Each pass (safe with several replicas running it at once: every change is a
conditional update or an idempotent revoke):

1. ends launches that never finished (the broker died after claiming the
   workspace and before recording the grant);
2. deletes every grant whose session is not active (``tunnels.reconcile``),
   each with its ``revoke_tunnel`` audit entry;
3. marks active sessions whose grant disappeared ``failed``, with an audit entry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from broker.core.sessions import SessionService
from tunnels.base import TunnelError, TunnelProvider
from tunnels.reconcile import reconcile

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pass:
    interrupted: int
    deleted: int
    failed: int
    lost: int


async def reconcile_once(
    sessions: SessionService, provider: TunnelProvider, *, launch_timeout: float
) -> Pass:
    interrupted = await sessions.end_interrupted_launches(timedelta(seconds=launch_timeout))
    known = await sessions.queries.active_grants()
    try:
        result = await reconcile(
            provider, set(known), known, still_active=sessions.queries.still_active
        )
    except TunnelError as exc:
        log.warning("reconcile: cannot list grants: %s", exc.message)
        return Pass(len(interrupted), 0, 0, 0)
    for ref in result.deleted:
        await sessions.note_reconciled(ref.session_id, ref.grant_id)
    lost = 0
    for session_id in result.lost:
        lost += await sessions.mark_tunnel_lost(session_id, known.get(session_id))
    return Pass(len(interrupted), len(result.deleted), len(result.failed), lost)
