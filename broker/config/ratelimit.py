"""``[ratelimit]``: request rate limits, applied at the HTTP edge (`broker.web.ratelimit`)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from broker.config.errors import ConfigError


@dataclass(frozen=True)
class RateLimitSettings:
    """``[ratelimit]``: launches and failed sign-ins, per user and per address."""

    enabled: bool = True
    user_launches_per_minute: float = 20.0
    user_launch_burst: int = 20
    ip_launches_per_minute: float = 60.0
    ip_launch_burst: int = 120
    user_auth_failures_per_minute: float = 10.0
    user_auth_failure_burst: int = 20
    ip_auth_failures_per_minute: float = 30.0
    ip_auth_failure_burst: int = 60
    max_keys: int = 100_000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "enabled" and value <= 0:
                raise ConfigError(f"'ratelimit.{f.name}' must be greater than 0")
