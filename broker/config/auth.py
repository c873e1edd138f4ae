"""``[auth]``: how the broker checks the identity provider's tokens."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AuthSettings:
    issuer: str = "connection-broker-dev"
    audience: str = "connection-broker"
    jwks_url: str = ""
    public_key_file: str = ""
    hs256_secret_file: str = ""
    algorithms: tuple[str, ...] = ()
    leeway_seconds: int = 30
    roles_claim: str = "roles"
    email_claim: str = "email"
    admin_roles: tuple[str, ...] = ("admin",)
    require_mfa: bool = False
    jwks_cache_seconds: int = 300
    http_timeout_seconds: float = 5.0
    max_token_bytes: int = 8192
    # Filled from BROKER_AUTH_HS256_SECRET or hs256_secret_file, never from TOML.
    hs256_secret: str = field(default="", repr=False)
    dev_secret: bool = False
