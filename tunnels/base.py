"""The network-access boundary: how the broker opens and closes a path to a workspace.

A *provider* turns "session S may reach workspace W" into a network path and
back. The broker calls it outside any database transaction, so every method
must be safe to call twice (idempotent) and must finish or fail within its
own timeouts.

Errors (one tree, each carrying the HTTP status the broker answers with)::

    TunnelError                      502  the provider refused or failed
    ├── TunnelUnavailable            503  the provider could not be reached (retry later)
    ├── TunnelConfigError            502  bad credentials, forbidden role, unknown peer/group
    └── TunnelRejected               502  the provider answered but the grant is unusable
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable


class TunnelStatus(StrEnum):
    """`tunnel_status` of a session (DESIGN.md section 1)."""

    ENCRYPTED = "encrypted"
    PENDING = "pending"
    DIRECT = "direct"
    REVOKED = "revoked"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Target:
    """What a provider needs to know about the workspace a session reaches.

    ``host``/``port`` are the workspace's own address (used as is by
    ``direct``). ``peer`` names the workspace's NetBird peer (id or name);
    overlay providers resolve it and ignore ``host``. ``probe`` asks the
    provider to check the port answers before the grant is returned.
    """

    workspace_id: str
    host: str
    port: int
    peer: str | None = None
    probe: bool = False


@dataclass(frozen=True, slots=True)
class Grant:
    """A path that is open for one session.

    ``address``/``port`` are what guacd or the HTTP proxy must connect to.
    ``grant_id`` is the provider's handle (a NetBird policy id), ``None`` when
    there is nothing to revoke.
    """

    session_id: str
    address: str
    port: int
    status: TunnelStatus
    grant_id: str | None = None


@dataclass(frozen=True, slots=True)
class GrantRef:
    """A grant found at the provider, as the reconciler sees it."""

    session_id: str
    grant_id: str


@dataclass(frozen=True, slots=True)
class Check:
    """One readiness check. ``ok=False`` fails readiness; ``warning`` does not."""

    name: str
    ok: bool
    detail: str = ""
    warning: str | None = None


@dataclass(frozen=True, slots=True)
class Health:
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


@runtime_checkable
class TunnelProvider(Protocol):
    """Opens and closes per-session network paths.

    ``name`` is what the launch response's ``security.tunnel`` shows
    (``"netbird"`` or ``"direct"``); ``encrypts`` says whether traffic crosses
    an encrypted overlay.
    """

    name: str
    encrypts: bool

    async def grant(self, session_id: str, target: Target) -> Grant:
        """Open the path. Raises `TunnelError` (nothing left open) on failure."""
        ...

    async def revoke(self, session_id: str, grant_id: str | None) -> None:
        """Close the path. Already gone counts as done. Raises `TunnelError`
        when the provider cannot be reached; the caller retries later."""
        ...

    async def list_grants(self) -> list[GrantRef]:
        """Every grant this broker owns at the provider (for the reconciler)."""
        ...

    async def health(self) -> Health:
        """Readiness checks, each bounded by a timeout."""
        ...

    async def aclose(self) -> None: ...


class TunnelError(Exception):
    """Base of the provider errors; ``http_status`` is what the API answers."""

    http_status = 502
    code = "tunnel_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TunnelUnavailable(TunnelError):
    http_status = 503
    code = "tunnel_unavailable"


class TunnelConfigError(TunnelError):
    code = "tunnel_config"


class TunnelRejected(TunnelError):
    code = "tunnel_rejected"
