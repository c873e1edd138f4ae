"""A failed network grant leaves no active session and an audited reason;
a failed revoke is retried until it succeeds."""

from __future__ import annotations

import asyncio

import pytest

from tests.broker.apiclient import Api
from tunnels.base import (
    Check,
    Grant,
    GrantRef,
    Health,
    Target,
    TunnelStatus,
    TunnelUnavailable,
)

pytestmark = pytest.mark.db


class FlakyProvider:
    """A provider double: grants and revokes fail while told to. It stands in for
    the network only; the NetBird provider's own faults are tested against the
    simulated NetBird server."""

    name = "netbird"
    encrypts = True

    def __init__(self) -> None:
        self.fail_grant = False
        self.fail_revoke = False
        self.open: dict[str, str] = {}
        self.revoked = asyncio.Event()

    async def grant(self, session_id: str, target: Target) -> Grant:
        if self.fail_grant:
            raise TunnelUnavailable("NetBird management API unreachable")
        self.open[session_id] = f"pol-{session_id[:8]}"
        return Grant(
            session_id, "127.64.0.10", target.port, TunnelStatus.ENCRYPTED, self.open[session_id]
        )

    async def revoke(self, session_id: str, grant_id: str | None) -> None:
        if self.fail_revoke:
            raise TunnelUnavailable("NetBird management API unreachable")
        self.open.pop(session_id, None)
        self.revoked.set()

    async def list_grants(self) -> list[GrantRef]:
        return [GrantRef(s, g) for s, g in self.open.items()]

    async def health(self) -> Health:
        return Health((Check("tunnel", not self.fail_grant, "test provider"),))

    async def aclose(self) -> None:
        return None


@pytest.fixture
def provider():
    return FlakyProvider()


@pytest.fixture
async def api(start_broker, make_settings, provider):
    settings = make_settings("\n[tunnel]\nrevoke_retry_seconds = 0.05\n")
    return Api(await start_broker(settings, tunnels=provider))


async def test_failed_grant_leaves_no_active_session(api, token, provider):
    provider.fail_grant = True
    t = token()
    r = await api.launch("ws-linux-desktop", t)
    assert r.status == 503
    assert "network path" in r.body["detail"]
    assert (await api.get("/api/sessions/active", t)).body == []
    (s,) = (await api.get("/api/sessions", t)).body
    assert (s["status"], s["end_reason"]) == ("terminated", "launch_failed")
    assert s["ended_at"] is not None
    audit = (await api.get("/api/audit", t, params={"session": s["id"]})).body
    assert [e["action"] for e in audit] == ["launch_failed", "launch_workspace"]
    assert "unreachable" in audit[0]["details"]["error"]
    assert provider.open == {}
    # The workspace is free again: a later launch works.
    provider.fail_grant = False
    ok = await api.launch("ws-linux-desktop", t)
    assert ok.status == 201 and ok.body["tunnel_status"] == "encrypted"
    assert ok.body["security"] == {
        "mfa_verified": True,
        "tunnel": "netbird",
        "encrypted": True,
        "recording": False,
    }
    assert ok.body["session"]["ip_address"] == "127.64.0.10"


async def test_revoke_retried_until_provider_returns(api, token, provider):
    t = token()
    sid = (await api.launch("ws-windows", t)).body["session_id"]
    assert sid in provider.open
    provider.fail_revoke = True
    r = await api.post(f"/api/sessions/{sid}/disconnect", t)
    assert r.status == 200
    s = (await api.get(f"/api/sessions/{sid}", t)).body
    assert s["status"] == "disconnected"
    assert sid in provider.open  # still open: NetBird was down
    provider.fail_revoke = False
    await asyncio.wait_for(provider.revoked.wait(), 10)
    assert sid not in provider.open
    admin = token("root", roles=["admin"])

    async def revoked() -> None:
        # The session's own row is what the user sees; the reconciler may audit
        # its removal of the leftover grant before the retry pass marks the row.
        while True:
            if (await api.get(f"/api/sessions/{sid}", t)).body["tunnel_status"] == "revoked":
                return
            await asyncio.sleep(0.02)

    await asyncio.wait_for(revoked(), 10)
    entries = (
        await api.get("/api/admin/audit", admin, params={"action": "revoke_tunnel", "session": sid})
    ).body
    outcomes = [e["details"]["outcome"] for e in reversed(entries)]
    assert outcomes[0] == "failed" and outcomes[-1] == "revoked"


async def test_readyz_names_failing_provider(api, provider):
    r = await api.client.get("/readyz")
    assert r.status == 200
    provider.fail_grant = True
    r = await api.client.get("/readyz")
    body = await r.json()
    assert r.status == 503 and body["checks"]["tunnel"]["ok"] is False
    assert "tunnel" in body["detail"]
