"""The ``direct`` provider: no overlay network, the workspace is reachable as is.

A development convenience and the choice for workspaces already on the
gateway's network. It opens nothing, so it has nothing to revoke or list.
"""

from __future__ import annotations

from tunnels.base import Check, Grant, GrantRef, Health, Target, TunnelStatus


class DirectProvider:
    name = "direct"
    encrypts = False

    async def grant(self, session_id: str, target: Target) -> Grant:
        return Grant(session_id, target.host, target.port, TunnelStatus.DIRECT)

    async def revoke(self, session_id: str, grant_id: str | None) -> None:
        return None

    async def list_grants(self) -> list[GrantRef]:
        return []

    async def health(self) -> Health:
        return Health((Check("tunnel", True, "direct: no overlay network"),))

    async def aclose(self) -> None:
        return None
