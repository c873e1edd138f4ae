"""Where token verification keys come from: an HS256 secret (development), a PEM
public key (RS/ES), or a JWKS URL (fetched asynchronously, cached, refreshed on an
unknown ``kid``).

Each source also decides which algorithms it accepts, which is what stops
algorithm confusion: a PEM or JWKS source never accepts an HMAC algorithm, an HS256
secret never accepts anything else, and ``none`` is accepted by nobody.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from broker.core.errors import ConfigError, Unauthorized

log = logging.getLogger(__name__)

RSA_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGS = ("ES256", "ES384", "ES512")

# A JWKS key and the algorithms it may verify.
_Entry = tuple[Any, tuple[str, ...]]


class KeySource(Protocol):
    async def key_for(self, header: dict[str, Any]) -> tuple[Any, list[str]]:
        """The key and the algorithms it may verify, for a token with ``header``.
        Raises `Unauthorized` when no key fits."""
        ...

    async def aclose(self) -> None: ...


def _check_alg(header: dict[str, Any], allowed: Sequence[str]) -> None:
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in allowed:
        raise Unauthorized("Token algorithm not accepted")


class SecretKey:
    """HS256 with a shared secret: for development only."""

    def __init__(self, secret: str) -> None:
        self._secret = secret

    async def key_for(self, header: dict[str, Any]) -> tuple[Any, list[str]]:
        _check_alg(header, ("HS256",))
        return self._secret, ["HS256"]

    async def aclose(self) -> None:
        return None


class PemKey:
    """One RSA or EC public key from a PEM file."""

    def __init__(self, path: str, algorithms: Sequence[str] = ()) -> None:
        try:
            key = load_pem_public_key(Path(path).read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"'auth.public_key_file': cannot load a public key: {exc}") from None
        if isinstance(key, rsa.RSAPublicKey):
            family: tuple[str, ...] = RSA_ALGS
        elif isinstance(key, ec.EllipticCurvePublicKey):
            family = EC_ALGS
        else:
            raise ConfigError("'auth.public_key_file' must hold an RSA or EC public key")
        chosen = [a for a in (algorithms or family) if a in family]
        if not chosen:
            raise ConfigError("'auth.algorithms' names no algorithm that fits the public key")
        self._key = key
        self._algs = chosen

    async def key_for(self, header: dict[str, Any]) -> tuple[Any, list[str]]:
        _check_alg(header, self._algs)
        return self._key, self._algs

    async def aclose(self) -> None:
        return None


class JwksKeys:
    """Keys from a JWKS URL. Cached for ``cache_seconds``; an unknown ``kid``
    triggers a refresh at most every ``min_refresh_seconds`` (so a flood of bad
    tokens cannot make the broker hammer the identity provider)."""

    def __init__(
        self,
        url: str,
        *,
        algorithms: Sequence[str] = (),
        cache_seconds: float = 300,
        timeout: float = 5.0,
        min_refresh_seconds: float = 10.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._url = url
        self._allowed = [a for a in (algorithms or RSA_ALGS + EC_ALGS) if a not in ("none",)]
        if any(a.startswith("HS") for a in self._allowed):
            raise ConfigError("'auth.algorithms': HMAC algorithms cannot be used with a JWKS URL")
        self._cache_seconds = cache_seconds
        self._min_refresh = min_refresh_seconds
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._own_session = session is None
        self._keys: dict[str, _Entry] = {}
        # None until the first fetch: time.monotonic() counts from boot, so a
        # 0.0 start looked "fresh" on a host up for less than cache_seconds.
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def key_for(self, header: dict[str, Any]) -> tuple[Any, list[str]]:
        _check_alg(header, self._allowed)
        kid = header.get("kid")
        if not isinstance(kid, str):
            kid = ""
        entry = await self._lookup(kid)
        if entry is None:
            raise Unauthorized("Token signed by an unknown key")
        key, key_algs = entry
        return key, [a for a in key_algs if a in self._allowed]

    def _age(self) -> float:
        if self._fetched_at is None:
            return float("inf")
        return time.monotonic() - self._fetched_at

    async def _lookup(self, kid: str) -> _Entry | None:
        if self._age() > self._cache_seconds:
            await self._refresh(older_than=self._cache_seconds)
        entry = self._find(kid)
        if entry is None and self._age() > self._min_refresh:
            await self._refresh(older_than=self._min_refresh)
            entry = self._find(kid)
        return entry

    def _find(self, kid: str) -> _Entry | None:
        if kid:
            return self._keys.get(kid)
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    async def _refresh(self, *, older_than: float) -> None:
        """Fetch, unless the keys were fetched less than ``older_than`` seconds
        ago: requests queued on the lock behind a fetch use its result."""
        async with self._lock:
            if self._age() <= older_than:
                return
            try:
                document = await self._fetch()
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("JWKS fetch from %s failed: %s", self._url, type(exc).__name__)
                self._fetched_at = time.monotonic()
                return
            self._keys = _parse_jwks(document)
            self._fetched_at = time.monotonic()

    async def _fetch(self) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.get(self._url, timeout=self._timeout) as resp:
            resp.raise_for_status()
            return json.loads(await resp.read())

    async def aclose(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()


def _parse_jwks(document: Any) -> dict[str, _Entry]:
    keys: dict[str, _Entry] = {}
    for i, jwk in enumerate(document.get("keys", []) if isinstance(document, dict) else []):
        if not isinstance(jwk, dict) or jwk.get("kty") not in ("RSA", "EC"):
            continue
        if jwk.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(jwk).key
        except (jwt.PyJWKError, ValueError, TypeError):
            continue
        # A key without "alg" (Azure AD publishes them so) verifies its own
        # family only: handing an RSA key to ES256 raised TypeError (a 500).
        alg = jwk.get("alg")
        family = RSA_ALGS if jwk["kty"] == "RSA" else EC_ALGS
        algs = (alg,) if isinstance(alg, str) and alg else family
        keys[str(jwk.get("kid") or f"#{i}")] = (key, algs)
    return keys


def key_source(
    *,
    jwks_url: str,
    public_key_file: str,
    hs256_secret: str,
    algorithms: Sequence[str],
    cache_seconds: float,
    timeout: float,
) -> KeySource:
    if jwks_url:
        return JwksKeys(
            jwks_url, algorithms=algorithms, cache_seconds=cache_seconds, timeout=timeout
        )
    if public_key_file:
        return PemKey(public_key_file, algorithms)
    return SecretKey(hs256_secret)
