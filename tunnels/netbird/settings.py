"""How the NetBird provider reaches NetBird and how patient it is: one settings type.

The broker's config loader builds `NetBirdSettings` from the ``[netbird]``
section (whose keys carry the same names); tests and tools build it directly.
The defaults here are the documented ones (``config.example.toml``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tunnels.probe import ProbeSettings


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry one logical call.

    ``max_retries`` bounds the attempts after the first; ``max_total`` bounds
    the whole call, attempts and pauses included (each attempt's timeout is
    cut to what is left). Pause ``n`` is ``backoff_base * 2**(n-1)``, capped
    at ``backoff_max``, with its upper half randomised (jitter).
    """

    max_retries: int
    max_total: float
    backoff_base: float
    backoff_max: float

    def delay(self, retry: int, rng: random.Random) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** (retry - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


@dataclass(frozen=True, slots=True)
class NetBirdSettings:
    """How to reach NetBird and how patient to be.

    ``token`` is a service user's personal access token (``nbp_...``); it is
    kept out of ``repr`` and never logged. ``gateway_group`` is the *name* of
    the group holding every host that connects to workspaces.
    ``timeout_seconds`` bounds each request; retries of one call stop after
    ``max_retries`` retries or ``max_retry_seconds`` seconds, whichever comes
    first. ``prefer_dns`` returns the peer's DNS label instead of its IP.
    ``check_timeout`` bounds each readiness check.
    Raises `ValueError` (never showing the token) for an unusable value.
    """

    base_url: str
    token: str = field(repr=False)
    gateway_group: str = "gateways"
    timeout_seconds: float = 10.0
    max_retries: int = 4
    max_retry_seconds: float = 20.0
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    prefer_dns: bool = False
    probe_attempts: int = 10
    probe_interval: float = 1.0
    probe_connect_timeout: float = 2.0
    check_timeout: float = 5.0

    def __post_init__(self) -> None:
        if urlsplit(self.base_url).scheme not in ("http", "https"):
            raise ValueError("NetBird base_url must be an http(s) URL")
        if not self.token or any(c.isspace() for c in self.token):
            raise ValueError("NetBird token must be non-empty and contain no whitespace")
        if not self.gateway_group:
            raise ValueError("NetBird gateway_group must name a group")
        if min(self.timeout_seconds, self.max_retry_seconds, self.check_timeout) <= 0:
            raise ValueError("NetBird timeouts must be positive")
        if self.max_retries < 0 or self.probe_attempts < 1:
            raise ValueError("NetBird max_retries must be >= 0 and probe_attempts >= 1")

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(
            self.max_retries, self.max_retry_seconds, self.backoff_base, self.backoff_max
        )

    @property
    def probe(self) -> ProbeSettings:
        return ProbeSettings(self.probe_attempts, self.probe_interval, self.probe_connect_timeout)
