"""The ``netbird`` provider: one NetBird policy per session, from the gateways to the workspace.

A grant resolves the workspace's peer, creates the policy ``broker:<session
id>`` opening the workspace's TCP port from the gateway group to that peer
(see ``shared/netbird/NOTES.md``), checks what NetBird kept, optionally
probes the port, and returns the peer's overlay address. A revoke deletes
the policy. Whatever fails inside a grant, the policy it made is deleted
again (best effort: the reconciler, `tunnels.reconcile`, removes what a
crash or an outage left behind).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from urllib.parse import quote

import aiohttp

from tunnels.base import (
    Grant,
    GrantRef,
    Health,
    Target,
    TunnelConfigError,
    TunnelError,
    TunnelRejected,
    TunnelStatus,
    TunnelUnavailable,
)
from tunnels.netbird import admin as netbird_admin
from tunnels.netbird import health as netbird_health
from tunnels.netbird.client import Lookup, NetBirdClient
from tunnels.netbird.models import (
    Peer,
    Policy,
    grant_policy_body,
    is_session_id,
    policy_name,
    raw_named,
    session_of,
)
from tunnels.netbird.queries import find_group, find_peer, list_policies
from tunnels.netbird.settings import NetBirdSettings
from tunnels.probe import probe_tcp

log = logging.getLogger("tunnels.netbird")


class NetBirdProvider:
    """`tunnels.base.TunnelProvider` on the NetBird Management API.

    Pass ``session`` to share an `aiohttp.ClientSession` (you close it);
    otherwise call `aclose`. ``rng`` seeds the retry jitter (tests).
    """

    name = "netbird"
    encrypts = True

    def __init__(
        self,
        settings: NetBirdSettings,
        *,
        session: aiohttp.ClientSession | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._client = NetBirdClient(
            settings.base_url,
            settings.token,
            timeout=settings.timeout_seconds,
            retry=settings.retry,
            session=session,
            rng=rng,
        )
        self._group_id: str | None = None

    async def grant(self, session_id: str, target: Target) -> Grant:
        """Open ``target.port`` on the workspace's peer to the gateway group.

        ``session_id`` must be a lowercase UUID (`ValueError` otherwise: the
        reconciler only recognises such names). Raises `TunnelConfigError`
        (token, role, unknown peer or group), `TunnelRejected` (NetBird did
        not keep the policy as sent), `TunnelUnavailable` (NetBird
        unreachable, or the probe failed); no policy is left behind then.
        """
        if not is_session_id(session_id):
            raise ValueError("session_id must be a lowercase UUID")
        group_id = await self.gateway_group_id()
        peer = await self._workspace_peer(target)
        address = self._address_of(peer)
        policy = await self._create_policy(session_id, group_id, peer.id, target.port)
        try:
            self._check_policy(policy, group_id, peer.id)
            if target.probe:
                await self._probe(peer, address, target.port)
        except BaseException:
            await self._discard(policy.id)
            raise
        status = TunnelStatus.ENCRYPTED if peer.connected else TunnelStatus.PENDING
        log.info("NetBird grant %s: policy %s to peer %s", session_id, policy.id, peer.name)
        return Grant(session_id, address, target.port, status, policy.id)

    async def revoke(self, session_id: str, grant_id: str | None) -> None:
        """Delete the session's policy (all ``broker:<session_id>`` ones when
        ``grant_id`` is ``None``). Already gone is done. Raises
        `TunnelUnavailable` when NetBird cannot be reached: retry later."""
        if grant_id is not None:
            await self._delete_policy(session_id, grant_id)
            return
        for ref in await self.list_grants():
            if ref.session_id == session_id:
                await self._delete_policy(session_id, ref.grant_id)

    async def list_grants(self) -> list[GrantRef]:
        """Every policy named ``broker:<uuid>``, whoever made it."""
        refs = ((session_of(p.name), p.id) for p in await list_policies(self._client))
        return [GrantRef(sid, pid) for sid, pid in refs if sid is not None]

    async def health(self) -> Health:
        """Credentials, gateway group, All-to-All warning; each check bounded."""
        return await netbird_health.readiness(self._client, self.settings)

    async def check(self) -> Health:
        """What readiness sees (the same as `health`), for an admin command."""
        return await self.health()

    async def describe(self) -> str:
        """What readiness sees, as lines for a terminal."""
        return netbird_health.describe(self.settings, await self.health())

    async def create_setup_key(
        self,
        name: str,
        groups: Sequence[str],
        *,
        ephemeral: bool,
        expires_in: int,
        usage_limit: int = 1,
    ) -> str:
        """Make a setup key enrolling peers into ``groups`` (ids or names); see
        `tunnels.netbird.admin.create_setup_key`. The returned key is a secret."""
        return await netbird_admin.create_setup_key(
            self._client,
            name,
            groups,
            ephemeral=ephemeral,
            expires_in=expires_in,
            usage_limit=usage_limit,
        )

    async def ensure_group(self, name: str) -> str:
        """The id of the group ``name``, created empty if missing."""
        return await netbird_admin.ensure_group(self._client, name)

    async def gateway_group_id(self) -> str:
        """The gateway group's id, looked up once and cached.

        Raises `TunnelConfigError` when no such group exists.
        """
        if self._group_id is None:
            group = await find_group(self._client, self.settings.gateway_group)
            if group is None:
                raise TunnelConfigError(
                    f"NetBird has no group named {self.settings.gateway_group!r}: create it "
                    "and add the gateway hosts' peers to it"
                )
            self._group_id = group.id
        return self._group_id

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _workspace_peer(self, target: Target) -> Peer:
        if not target.peer:
            raise TunnelConfigError(f"workspace {target.workspace_id} names no NetBird peer")
        return await find_peer(self._client, target.peer, owner=f"workspace {target.workspace_id}")

    def _address_of(self, peer: Peer) -> str:
        address = peer.dns_label if self.settings.prefer_dns and peer.dns_label else peer.ip
        if not address:
            raise TunnelRejected(f"NetBird peer {peer.name!r} has no overlay address")
        return address

    async def _create_policy(
        self, session_id: str, group_id: str, peer_id: str, port: int
    ) -> Policy:
        body = grant_policy_body(session_id, group_id, peer_id, port)
        lookup = Lookup("/api/policies", lambda data: raw_named(data, body["name"]))
        try:
            created = Policy.parse(await self._client.post("/api/policies", body, lookup=lookup))
        except (TunnelConfigError, TunnelRejected):
            raise  # NetBird refused: nothing was made (a refused lookup: the reconciler)
        except BaseException:  # unavailable or cancelled: it may have been made
            await self._discard_session(session_id)
            raise
        if created is None:
            await self._discard_session(session_id)
            raise TunnelRejected("NetBird answered the policy create without a policy id")
        return created

    def _check_policy(self, policy: Policy, group_id: str, peer_id: str) -> None:
        """NetBird drops unknown group ids silently: check what it kept."""
        rule = policy.rules[0] if policy.rules else None
        if rule is None or group_id not in {g.id for g in rule.sources}:
            self._group_id = None  # the group may have been deleted and made again
            raise TunnelRejected(
                f"NetBird dropped the gateway group {self.settings.gateway_group!r} "
                f"({group_id}) from policy {policy.id}'s sources; does the group still exist?"
            )
        if rule.destination_peer != peer_id:
            raise TunnelRejected(
                f"NetBird did not keep peer {peer_id} as policy {policy.id}'s destination"
            )
        if not (policy.enabled and rule.enabled):
            raise TunnelRejected(f"NetBird stored policy {policy.id} disabled")

    async def _probe(self, peer: Peer, address: str, port: int) -> None:
        result = await probe_tcp(address, port, self.settings.probe)
        if not result.ok:
            raise TunnelUnavailable(
                f"workspace peer {peer.name!r} did not accept a TCP connection on "
                f"{address}:{port} after {result.attempts} attempts ({result.last_error}); "
                "the grant was revoked"
            )

    async def _delete_policy(self, session_id: str, grant_id: str) -> None:
        deleted = await self._client.delete("/api/policies/" + quote(grant_id, safe=""))
        outcome = "deleted" if deleted else "already gone"
        log.info("NetBird revoke %s: policy %s %s", session_id, grant_id, outcome)

    async def _discard(self, policy_id: str) -> None:
        """Best-effort delete after a failed grant, bounded by one request timeout."""
        try:
            async with asyncio.timeout(self.settings.timeout_seconds):
                await self._client.delete("/api/policies/" + quote(policy_id, safe=""))
        except (TunnelError, TimeoutError) as exc:
            log.warning(
                "NetBird: could not delete policy %s after a failed grant (%s); "
                "the reconciler will",
                policy_id,
                exc,
            )

    async def _discard_session(self, session_id: str) -> None:
        """Best effort: delete what an unconfirmed create may have made."""
        try:
            async with asyncio.timeout(self.settings.timeout_seconds):
                policies = await list_policies(self._client)
                for policy in policies:
                    if policy.name == policy_name(session_id):
                        await self._client.delete("/api/policies/" + quote(policy.id, safe=""))
        except (TunnelError, TimeoutError) as exc:
            log.warning(
                "NetBird: could not check for a policy of session %s after a failed "
                "grant (%s); the reconciler will",
                session_id,
                exc,
            )
