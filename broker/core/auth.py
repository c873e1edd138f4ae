"""Who is calling: bearer JWTs from the identity provider, turned into a `Principal`.

`Authenticator.authenticate` verifies signature, ``exp``, ``nbf``, ``iss`` and
``aud`` (with a small leeway) and raises `Unauthorized` with a generic message
for every failure; the precise reason goes to the debug log, never to the caller.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from broker.config import AuthSettings, WorkspaceConfig
from broker.core.errors import Unauthorized
from broker.core.keys import KeySource, key_source

log = logging.getLogger(__name__)

MFA_METHODS = frozenset({"mfa", "otp", "hwk"})


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    email: str
    roles: frozenset[str]
    is_admin: bool
    mfa_verified: bool

    def may_use(self, workspace: WorkspaceConfig) -> bool:
        """Entitlement: admins and users holding one of the workspace's
        ``allowed_roles`` (every user when the list is empty)."""
        if self.is_admin or not workspace.allowed_roles:
            return True
        return not self.roles.isdisjoint(workspace.allowed_roles)


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
        except jwt.PyJWTError as exc:
            log.debug("token refused: %s", type(exc).__name__)
            raise Unauthorized("Invalid or expired token") from None
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
        )

    async def aclose(self) -> None:
        await self._keys.aclose()


def _has_controls(value: str) -> bool:
    """Control characters (NUL among them, which PostgreSQL cannot store) have
    no place in a user id or an email address."""
    return any(ord(c) < 32 or ord(c) == 127 for c in value)


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
