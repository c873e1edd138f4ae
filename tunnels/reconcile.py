"""One reconciliation pass: compare the grants at the provider with the broker's sessions.

The broker runs `reconcile` periodically (the loop is the broker's). It
deletes the grants of sessions that are no longer active, so a crash
between a session's end and its revoke leaves no open door for long, and it
reports active sessions whose grant disappeared (deleted by hand, or with
its peer) so the broker can mark them ``failed`` or grant again.

Safe with several replicas reconciling at once: revoking an already
deleted grant is done, not an error. The one race to mind is with a launch:
a grant made after the caller read ``active_session_ids`` belongs to a
session missing from that set. Either read the active sessions after the
launch recorded its session (the broker records the session before
granting) and pass ``still_active``, which is asked about every grant
before it is deleted, or accept that such a launch may lose its grant and
see it reported as lost on the next pass.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass

from tunnels.base import GrantRef, TunnelError, TunnelProvider

log = logging.getLogger("tunnels.reconcile")

StillActive = Callable[[Collection[str]], Awaitable[Collection[str]]]


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """``deleted``: grants of ended sessions revoked now (or found gone).
    ``failed``: such grants whose revoke failed (tried again next pass).
    ``lost``: active sessions whose known grant is no longer at the provider.
    """

    deleted: tuple[GrantRef, ...] = ()
    failed: tuple[GrantRef, ...] = ()
    lost: tuple[str, ...] = ()


async def reconcile(
    provider: TunnelProvider,
    active_session_ids: Collection[str],
    known_grant_ids: Mapping[str, str | None],
    *,
    still_active: StillActive | None = None,
) -> ReconcileResult:
    """Delete leftover grants, report lost ones; never touch an active session's grant.

    ``known_grant_ids`` maps active session ids to the grant id the broker
    stored (``None``: none expected, e.g. ``direct`` or still launching).
    Raises `TunnelError` when the provider's grants cannot be listed; a
    failing revoke is reported in ``failed`` instead.
    """
    grants = await provider.list_grants()
    leftovers = [g for g in grants if g.session_id not in active_session_ids]
    if leftovers and still_active is not None:
        revived = set(await still_active({g.session_id for g in leftovers}))
        leftovers = [g for g in leftovers if g.session_id not in revived]
    deleted, failed = [], []
    for grant in leftovers:
        try:
            await provider.revoke(grant.session_id, grant.grant_id)
        except TunnelError as exc:
            log.warning("reconcile: revoke of %s failed: %s", grant.grant_id, exc.message)
            failed.append(grant)
        else:
            deleted.append(grant)
    present = {(g.session_id, g.grant_id) for g in grants}
    lost = sorted(
        sid
        for sid, gid in known_grant_ids.items()
        if gid is not None and sid in active_session_ids and (sid, gid) not in present
    )
    if deleted or failed or lost:
        log.info(
            "reconcile: %d leftover grant(s) deleted, %d failed, %d lost",
            len(deleted),
            len(failed),
            len(lost),
        )
    return ReconcileResult(tuple(deleted), tuple(failed), tuple(lost))
