"""Rate limits: in-memory token buckets, keyed by user or by client address.

A `Bucket` holds up to ``burst`` tokens per key and refills ``per_minute``
of them a minute. `Bucket.take` spends one (or says how long until one is
there); `Bucket.peek` only looks. A key whose bucket is full again is
forgotten, and at most ``max_keys`` keys are kept (the least recently seen
go first), so memory stays bounded whatever addresses or user names a caller
makes up; an evicted key simply starts again with a full bucket.

Addresses are keyed by `address_key`: an IPv6 client by its /64 (one host
usually holds a whole /64, so keying by /128 would give it 2^64 budgets), an
IPv4 client (also IPv4-mapped IPv6) by its address.

One process (the default) counts in memory. With ``broker serve --workers
N`` (`RateLimits.share`) the buckets are rows in PostgreSQL
(`broker.core.ratebuckets`), one budget for the host (and for replicas on
the same database): each spend is one UPSERT, and a worker that is refused
remembers the key as refused until its bucket has a token again, so the
checks before a request (`peek`) stay in memory. A key spent out on one
worker is thus refused by another from that worker's own next spend of it:
at most one request per worker beyond the host's budget, instead of N times
the budget. Without ``--workers``, replicas each count on their own.

No HTTP here: `broker.web.guard` applies these at the HTTP edge.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from broker.config import RateLimitSettings
from broker.core.ratebuckets import RateStore

Clock = Callable[[], float]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _State:
    tokens: float
    at: float


class Bucket:
    """A token bucket per key: ``burst`` at once, ``per_minute`` a minute after that."""

    def __init__(
        self, per_minute: float, burst: int, *, max_keys: int = 100_000, clock: Clock | None = None
    ) -> None:
        if per_minute <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("a bucket needs per_minute > 0, burst >= 1 and max_keys >= 1")
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._max_keys = max_keys
        self._clock = clock or time.monotonic
        self._states: OrderedDict[str, _State] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def take(self, key: str) -> float:
        """Spend a token of ``key``: 0.0 when there was one, else the seconds
        until there will be (nothing is spent then)."""
        state = self._refilled(key)
        if state.tokens >= 1.0:
            state.tokens -= 1.0
            self._keep(key, state)
            return 0.0
        return (1.0 - state.tokens) / self._rate

    def peek(self, key: str) -> float:
        """Like `take` without spending: 0.0 when ``key`` has a token left."""
        state = self._refilled(key)
        return 0.0 if state.tokens >= 1.0 else (1.0 - state.tokens) / self._rate

    def _refilled(self, key: str) -> _State:
        now = self._clock()
        state = self._states.get(key)
        if state is None:
            return _State(self._burst, now)
        state.tokens = min(self._burst, state.tokens + (now - state.at) * self._rate)
        state.at = now
        if state.tokens >= self._burst:
            del self._states[key]  # full again: the same as never seen
        return state

    def _keep(self, key: str, state: _State) -> None:
        self._states[key] = state
        self._states.move_to_end(key)
        while len(self._states) > self._max_keys:
            self._states.popitem(last=False)


IPV6_PREFIX = 64


def address_key(address: str) -> str:
    """The key a client address is limited by: an IPv6 address's /64 (e.g.
    ``2001:db8:1:2::/64``), an IPv4 address itself; anything else as it is."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


def retry_after(wait: float) -> int:
    """A ``Retry-After`` value in whole seconds, at least 1."""
    return max(1, math.ceil(wait))


class Limiter(Protocol):
    """One limit, keyed: `take` spends, `peek` only looks (0.0: a token is
    there, else the seconds until one is)."""

    async def take(self, key: str) -> float: ...

    async def peek(self, key: str) -> float: ...


class LocalLimiter:
    """A limit counted in this process's memory."""

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket

    async def take(self, key: str) -> float:
        return self.bucket.take(key)

    async def peek(self, key: str) -> float:
        return self.bucket.peek(key)


class SharedLimiter:
    """A limit counted in the database (`RateStore`) for every process, named
    ``name`` there; refusals are remembered here (at most ``max_keys``)."""

    def __init__(
        self,
        store: RateStore,
        name: str,
        per_minute: float,
        burst: int,
        *,
        max_keys: int = 100_000,
        clock: Clock | None = None,
    ) -> None:
        self._store = store
        self._name = name
        self._per_minute = per_minute
        self._burst = burst
        self._max_keys = max_keys
        self._clock = clock or time.monotonic
        self._refused: OrderedDict[str, float] = OrderedDict()

    async def take(self, key: str) -> float:
        try:
            wait = await self._store.take(f"{self._name}:{key}", self._per_minute, self._burst)
        except Exception as exc:
            # The request itself went through already: a database hiccup here
            # must not turn its answer into a 500. Not counted, this once.
            log.warning("rate limit %s: not counted (%s)", self._name, type(exc).__name__)
            return 0.0
        if wait:
            self._refused[key] = self._clock() + wait
            self._refused.move_to_end(key)
            while len(self._refused) > self._max_keys:
                self._refused.popitem(last=False)
        else:
            self._refused.pop(key, None)
        return wait

    async def peek(self, key: str) -> float:
        until = self._refused.get(key)
        if until is None:
            return 0.0
        wait = until - self._clock()
        if wait <= 0:
            del self._refused[key]
            return 0.0
        return wait


class RateLimits:
    """The broker's four limits. With ``enabled = false`` every check passes."""

    def __init__(self, settings: RateLimitSettings, clock: Clock | None = None) -> None:
        s = self.settings = settings
        self.enabled = s.enabled
        self.store: RateStore | None = None

        def bucket(per_minute: float, burst: int) -> Limiter:
            return LocalLimiter(Bucket(per_minute, burst, max_keys=s.max_keys, clock=clock))

        self.user_launches = bucket(s.user_launches_per_minute, s.user_launch_burst)
        self.ip_launches = bucket(s.ip_launches_per_minute, s.ip_launch_burst)
        self.user_failures = bucket(s.user_auth_failures_per_minute, s.user_auth_failure_burst)
        self.ip_failures = bucket(s.ip_auth_failures_per_minute, s.ip_auth_failure_burst)

    def share(self, store: RateStore) -> None:
        """Count in ``store`` from now on, with every other process using it
        (at start, before requests: what was counted in memory is dropped)."""
        s = self.settings
        self.store = store

        def shared(name: str, per_minute: float, burst: int) -> Limiter:
            return SharedLimiter(store, name, per_minute, burst, max_keys=s.max_keys)

        self.user_launches = shared(
            "user_launches", s.user_launches_per_minute, s.user_launch_burst
        )
        self.ip_launches = shared("ip_launches", s.ip_launches_per_minute, s.ip_launch_burst)
        self.user_failures = shared(
            "user_auth_failures", s.user_auth_failures_per_minute, s.user_auth_failure_burst
        )
        self.ip_failures = shared(
            "ip_auth_failures", s.ip_auth_failures_per_minute, s.ip_auth_failure_burst
        )
