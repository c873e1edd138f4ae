"""Who is calling: bearer JWTs from the identity provider, turned into a `Principal`.

`Authenticator.authenticate` verifies signature, ``exp``, ``nbf``, ``iss`` and
``aud`` (with a small leeway) and raises `Unauthorized` with a generic message
for every failure; the precise reason goes to the debug log, never to the caller.
Time claims must be JSON numbers (PyJWT alone takes ``"9999999999"``), and a
``sub`` with control or Unicode format characters (bidi overrides) is refused.

`Entitlement` is what a credential proves about the user's rights (roles, admin,
MFA); `require_entitled` holds it against a workspace's current rules, at launch
and at every connect (`broker.core.credentials`).
"""

from __future__ import annotations

import logging
import math
import time
import unicodedata
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from broker.config import AuthSettings, WorkspaceConfig
from broker.core.errors import Forbidden, Unauthorized
from broker.core.keys import KeySource, key_source

log = logging.getLogger(__name__)

MFA_METHODS = frozenset({"mfa", "otp", "hwk"})
TIME_CLAIMS = ("exp", "nbf", "iat")
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
NOT_ENTITLED = "You are not allowed to use this workspace"
MFA_REQUIRED = "Multi-factor authentication is required to use this workspace"


@dataclass(frozen=True, slots=True)
class Entitlement:
    """What a credential proves about its user's rights: the roles, admin flag
    and MFA of the token that proved them."""

    roles: frozenset[str]
    is_admin: bool
    mfa_verified: bool

    def may_use(self, workspace: WorkspaceConfig) -> bool:
        """Entitlement: admins and users holding one of the workspace's
        ``allowed_roles`` (every user when the list is empty)."""
        if self.is_admin or not workspace.allowed_roles:
            return True
        return not self.roles.isdisjoint(workspace.allowed_roles)


@dataclass(frozen=True, slots=True)
class Principal:
    """The user a verified JWT proves; ``expires_at`` is the token's ``exp``."""

    user_id: str
    email: str
    roles: frozenset[str]
    is_admin: bool
    mfa_verified: bool
    expires_at: datetime = LATEST

    @property
    def entitlement(self) -> Entitlement:
        return Entitlement(self.roles, self.is_admin, self.mfa_verified)

    def may_use(self, workspace: WorkspaceConfig) -> bool:
        return self.entitlement.may_use(workspace)


def require_entitled(
    who: Entitlement | Principal, workspace: WorkspaceConfig | None, settings: AuthSettings
) -> None:
    """`Forbidden` unless ``who`` may use ``workspace`` under its current rules:
    one of its ``allowed_roles`` (or admin), and MFA when ``require_mfa`` is on.
    A workspace no longer configured is nobody's."""
    if workspace is None or not who.may_use(workspace):
        raise Forbidden(NOT_ENTITLED, code="not_entitled")
    if settings.require_mfa and not who.mfa_verified:
        raise Forbidden(MFA_REQUIRED, code="mfa_required")


class Authenticator:
    def __init__(self, settings: AuthSettings, keys: KeySource | None = None) -> None:
        self._s = settings
        self._keys = keys or key_source(
            jwks_url=settings.jwks_url,
            public_key_file=settings.public_key_file,
            hs256_secret=settings.hs256_secret,
            algorithms=settings.algorithms,
            cache_seconds=settings.jwks_cache_seconds,
            timeout=settings.http_timeout_seconds,
        )

    async def authenticate(self, token: str) -> Principal:
        if not token or len(token) > self._s.max_token_bytes:
            raise Unauthorized("Invalid token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("Invalid token") from None
        key, algorithms = await self._keys.key_for(header)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self._s.audience,
                issuer=self._s.issuer,
                leeway=self._s.leeway_seconds,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except (jwt.PyJWTError, OverflowError) as exc:
            log.debug("token refused: %s", type(exc).__name__)
            raise Unauthorized("Invalid or expired token") from None
        if not all(_is_time(claims[name]) for name in TIME_CLAIMS if name in claims):
            log.debug("token refused: a time claim is not a number")
            raise Unauthorized("Invalid token")
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 255 or _has_controls(sub):
            raise Unauthorized("Invalid token")
        email = claims.get(self._s.email_claim)
        if isinstance(email, str) and _has_controls(email):
            email = ""
        roles = frozenset(_strings(_claim(claims, self._s.roles_claim)))
        amr = frozenset(_strings(claims.get("amr")))
        return Principal(
            user_id=sub,
            email=email if isinstance(email, str) else "",
            roles=roles,
            is_admin=not roles.isdisjoint(self._s.admin_roles),
            mfa_verified=not amr.isdisjoint(MFA_METHODS),
            expires_at=_instant(claims["exp"]),
        )

    async def aclose(self) -> None:
        await self._keys.aclose()


def _has_controls(value: str) -> bool:
    """Control characters (NUL among them, which PostgreSQL cannot store) and
    Unicode format characters (category Cf: bidi overrides such as U+202E,
    zero-width ones) have no place in a user id or an email address: they make
    one identity look like another in the portal, the audit log and logs."""
    return any(ord(c) < 32 or 127 <= ord(c) < 160 or unicodedata.category(c) == "Cf" for c in value)


def _is_time(value: Any) -> bool:
    """A NumericDate (RFC 7519): a finite JSON number; not a string, not a boolean."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _instant(value: int | float) -> datetime:
    """A NumericDate as an aware datetime, clamped to what databases store."""
    try:
        return min(datetime.fromtimestamp(value, UTC), LATEST)
    except (OverflowError, OSError, ValueError):
        return LATEST if value > 0 else datetime.fromtimestamp(0, UTC)


def _claim(claims: dict[str, Any], path: str) -> Any:
    """A claim by name, or by dotted path (``realm_access.roles`` for Keycloak).
    The name wins: namespaced claims such as ``https://example.com/roles``
    (required by Auth0) contain dots."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def mint_dev_token(
    secret: str,
    *,
    issuer: str,
    audience: str,
    sub: str,
    email: str,
    roles: Sequence[str] = (),
    mfa: bool = True,
    ttl: int = 8 * 3600,
    roles_claim: str = "roles",
    email_claim: str = "email",
) -> str:
    """A development HS256 token, as ``broker token`` prints it."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": sub,
        email_claim: email,
        roles_claim: list(roles),
        "amr": ["pwd", "mfa"] if mfa else ["pwd"],
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, secret, algorithm="HS256")
