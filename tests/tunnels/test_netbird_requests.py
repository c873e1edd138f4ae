"""Every request the NetBird provider sends meets NetBird's published spec."""

from __future__ import annotations

from tests.tunnels.conftest import ADMIN, new_session_id, provider_with
from tunnels.base import Target
from tunnels.netbird.provider import NetBirdProvider
from tunnels.netbird.settings import NetBirdSettings
from tunnels.reconcile import reconcile
from tunnels.simulated.faults import FaultKind
from tunnels.simulated.server import SimulatedNetBird


def template(path: str) -> str:
    """``/api/policies/<id>`` as ``/api/policies/{id}``."""
    parts = path.split("/")
    if len(parts) == 4 and parts[2] in ("peers", "policies"):
        parts[3] = "{id}"
    return "/".join(parts)


async def test_every_call_the_provider_makes_validates_against_the_spec(
    sim: SimulatedNetBird, provider: NetBirdProvider, settings: NetBirdSettings
) -> None:
    sid, ended = new_session_id(), new_session_id()
    sim.inject(FaultKind.COMMIT_THEN_ERROR, method="POST", path="/api/policies")
    grant = await provider.grant(sid, Target("w", "10.0.0.1", 3389, peer="ws-linux"))
    await provider.grant(ended, Target("w", "10.0.0.1", 22, peer=sim.peer_id("ws-linux-2")))
    await reconcile(provider, {sid}, {sid: grant.grant_id})
    await provider.health()
    await provider.ensure_group("gateways-eu")
    await provider.revoke(sid, grant.grant_id)
    await provider.revoke(sid, None)
    async with provider_with(settings, token=ADMIN) as admin:
        await admin.create_setup_key("gw", ["gateways-eu"], ephemeral=False, expires_in=600)

    calls = {(r.method, template(r.path)) for r in sim.requests}
    assert calls == {
        ("GET", "/api/groups"),
        ("POST", "/api/groups"),
        ("GET", "/api/peers"),
        ("GET", "/api/peers/{id}"),
        ("GET", "/api/policies"),
        ("POST", "/api/policies"),
        ("DELETE", "/api/policies/{id}"),
        ("GET", "/api/users/current"),
        ("POST", "/api/setup-keys"),
    }
    assert sim.invalid_requests() == []
