"""Real identity-provider setups: the broker verifies with a PEM public key
or the keys of a JWKS URL (cached, refreshed on rotation, bounded when the
provider hangs or is down), and refuses every other key and algorithm."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import broker.core.keys
from tests.broker.auth_support import (
    NO_HS256,
    claims,
    expect_401,
    hmac_signed,
    launch,
    public_pem,
    signed,
    unsigned,
)
from tests.conftest import auth

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_key2() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def key_settings(make_settings: Callable[..., Any], tmp_path: Path) -> Callable[..., Any]:
    """Settings for a broker that verifies with ``private_key``'s public PEM only."""

    def make(private_key: Any) -> Any:
        path = tmp_path / "idp.pem"
        path.write_bytes(public_pem(private_key))
        settings = make_settings(f'[auth]\npublic_key_file = "{path}"\n', env=NO_HS256)
        assert settings.auth.hs256_secret == ""
        return settings

    return make


# -- PEM public keys -------------------------------------------------------------


async def test_rs256_with_a_pem_file(key_settings, start_broker, rsa_key, token):
    client = await start_broker(key_settings(rsa_key))
    good = auth(signed(rsa_key, "RS256"))
    r = await client.get("/api/me", headers=good)
    assert r.status == 200
    assert (await r.json())["user_id"] == "alice"
    r = await launch(client, good)
    assert r.status == 201
    # The development secret means nothing to this broker.
    await expect_401(await client.get("/api/me", headers=auth(token("alice"))))


async def test_es256_with_a_pem_file(key_settings, start_broker, ec_key, rsa_key):
    client = await start_broker(key_settings(ec_key))
    r = await client.get("/api/me", headers=auth(signed(ec_key, "ES256")))
    assert r.status == 200
    assert (await r.json())["user_id"] == "alice"
    await expect_401(await client.get("/api/me", headers=auth(signed(rsa_key, "RS256"))))


async def test_pem_broker_refuses_other_keys_and_confusion(
    key_settings, start_broker, rsa_key, rsa_key2
):
    pem = public_pem(rsa_key)
    client = await start_broker(key_settings(rsa_key))
    header = {"alg": "HS256", "typ": "JWT"}
    forged = [
        # HS/RS confusion: the public key (which anyone may have) as an HMAC secret.
        hmac_signed(header, claims(roles=["admin"]), pem),
        hmac_signed(header, claims(), pem.strip()),
        hmac_signed({**header, "alg": "HS512"}, claims(), pem),
        unsigned(claims()),
        signed(rsa_key2, "RS256"),  # another identity provider's key
        signed(rsa_key, "RS256", aud="another-service"),
        signed(rsa_key, "RS256", exp=int(time.time()) - 120),
    ]
    for value in forged:
        await expect_401(await client.get("/api/me", headers=auth(value)))
        await expect_401(await launch(client, auth(value)))
    assert (await client.get("/api/me", headers=auth(signed(rsa_key, "RS256")))).status == 200
    assert (await client.get("/api/me", headers=auth(signed(rsa_key, "PS256")))).status == 200
    # Nothing was launched (the admin check uses an RS256 admin token here).
    admin = auth(signed(rsa_key, "RS256", sub="root", roles=["admin"]))
    r = await client.get("/api/admin/sessions", headers=admin)
    assert r.status == 200
    assert await r.json() == []


async def test_relative_pem_path_is_relative_to_the_config_file(
    make_settings, start_broker, tmp_path, rsa_key, monkeypatch
):
    """Like the *_file secrets: the broker may be started from any directory."""
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "idp.pem").write_bytes(public_pem(rsa_key))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = make_settings('[auth]\npublic_key_file = "keys/idp.pem"\n', env=NO_HS256)
    client = await start_broker(settings)
    r = await client.get("/api/me", headers=auth(signed(rsa_key, "RS256")))
    assert r.status == 200


# -- JWKS ------------------------------------------------------------------------


class Jwks:
    """A tiny identity provider's JWKS endpoint that counts its fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        self.url = ""
        self.down = False
        self.hang: asyncio.Event | None = None

    def publish(self, private_key: Any, kid: str, alg: str | None = "RS256") -> None:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
        # Some providers (Azure AD, for one) publish keys without "alg".
        self.keys.append({**jwk, "kid": kid, "use": "sig", **({"alg": alg} if alg else {})})

    def withdraw(self, kid: str) -> None:
        self.keys = [k for k in self.keys if k["kid"] != kid]

    async def handle(self, request: web.Request) -> web.Response:
        self.fetches += 1
        if self.hang is not None:
            await self.hang.wait()
        if self.down:
            return web.json_response({"error": "maintenance"}, status=503)
        return web.json_response({"keys": self.keys})


class Clock:
    """Stands in for ``time`` inside `broker.core.keys`, so cache ages are set, not slept."""

    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
async def jwks() -> AsyncIterator[Jwks]:
    idp = Jwks()
    app = web.Application()
    app.router.add_get("/jwks.json", idp.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    idp.url = str(server.make_url("/jwks.json"))
    yield idp
    if idp.hang is not None:
        idp.hang.set()
    await server.close()


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock(100_000.0)
    monkeypatch.setattr(broker.core.keys, "time", fake)
    return fake


@pytest.fixture
def jwks_broker(jwks, make_settings, start_broker):
    async def start(extra: str = "") -> Any:
        settings = make_settings(f'[auth]\njwks_url = "{jwks.url}"\n{extra}', env=NO_HS256)
        return await start_broker(settings)

    return start


async def me(client: Any, value: str) -> Any:
    return await client.get("/api/me", headers=auth(value))


async def test_rs256_via_jwks_is_cached(jwks, clock, jwks_broker, rsa_key):
    jwks.publish(rsa_key, "k1")
    client = await jwks_broker()
    for _ in range(3):
        r = await me(client, signed(rsa_key, "RS256", kid="k1"))
        assert r.status == 200
    assert jwks.fetches == 1
    r = await launch(client, auth(signed(rsa_key, "RS256", kid="k1")))
    assert r.status == 201
    assert jwks.fetches == 1


async def test_concurrent_requests_share_one_fetch(jwks, clock, jwks_broker, rsa_key):
    """A burst of requests at start-up or at cache expiry fetches the keys once,
    not once per request in a queue behind each other."""
    jwks.publish(rsa_key, "k1")
    client = await jwks_broker()
    value = signed(rsa_key, "RS256", kid="k1")
    for expected_fetches in (1, 2):
        results = await asyncio.gather(*(me(client, value) for _ in range(10)))
        assert [r.status for r in results] == [200] * 10
        assert jwks.fetches == expected_fetches
        clock.now += 301  # past auth.jwks_cache_seconds


async def test_rotated_key_is_accepted_after_one_refresh(
    jwks, clock, jwks_broker, rsa_key, rsa_key2
):
    jwks.publish(rsa_key, "k1")
    client = await jwks_broker()
    assert (await me(client, signed(rsa_key, "RS256", kid="k1"))).status == 200
    assert jwks.fetches == 1

    jwks.publish(rsa_key2, "k2")
    clock.now += 11  # beyond the unknown-kid refresh limit, well within the cache age
    r = await me(client, signed(rsa_key2, "RS256", kid="k2"))
    assert r.status == 200
    assert jwks.fetches == 2
    assert (await me(client, signed(rsa_key, "RS256", kid="k1"))).status == 200
    assert (await me(client, signed(rsa_key2, "RS256", kid="k2"))).status == 200
    assert jwks.fetches == 2


async def test_withdrawn_key_is_refused_once_the_cache_expires(
    jwks, clock, jwks_broker, rsa_key, rsa_key2
):
    jwks.publish(rsa_key, "k1")
    jwks.publish(rsa_key2, "k2")
    client = await jwks_broker()
    assert (await me(client, signed(rsa_key, "RS256", kid="k1"))).status == 200
    jwks.withdraw("k1")
    clock.now += 301  # auth.jwks_cache_seconds defaults to 300
    await expect_401(await me(client, signed(rsa_key, "RS256", kid="k1")))
    assert (await me(client, signed(rsa_key2, "RS256", kid="k2"))).status == 200


async def test_unknown_kid_is_refused_and_refetches_at_most_once(
    jwks, clock, jwks_broker, rsa_key, rsa_key2, token
):
    jwks.publish(rsa_key, "k1")
    client = await jwks_broker()
    assert (await me(client, signed(rsa_key, "RS256", kid="k1"))).status == 200
    clock.now += 11
    stranger = signed(rsa_key2, "RS256", kid="not-published")
    for _ in range(5):
        await expect_401(await me(client, stranger))
        await expect_401(await launch(client, auth(stranger)))
    # One refresh for the unknown kid, not one per request: a flood of forged
    # tokens cannot make the broker hammer the identity provider.
    assert jwks.fetches == 2
    # A known kid with a signature from another key is refused too.
    await expect_401(await me(client, signed(rsa_key2, "RS256", kid="k1")))
    admin = auth(signed(rsa_key, "RS256", kid="k1", sub="root", roles=["admin"]))
    r = await client.get("/api/admin/sessions", headers=admin)
    assert await r.json() == []


async def test_jwks_works_right_after_boot(jwks, clock, jwks_broker, rsa_key):
    """The monotonic clock counts from boot: a broker started a second after
    its host booted must still fetch the keys for its first request."""
    clock.now = 1.0
    jwks.publish(rsa_key, "k1")
    client = await jwks_broker()
    assert (await me(client, signed(rsa_key, "RS256", kid="k1"))).status == 200
    assert jwks.fetches == 1


async def test_jwks_broker_refuses_hmac_and_none(jwks, clock, jwks_broker, rsa_key):
    jwks.publish(rsa_key, "k1")
    client = await jwks_broker()
    jwk_text = json.dumps(jwks.keys[0]).encode()
    pem = public_pem(rsa_key)
    for value in [
        hmac_signed({"alg": "HS256", "kid": "k1"}, claims(), pem),
        hmac_signed({"alg": "HS256", "kid": "k1"}, claims(), jwk_text),
        unsigned(claims()),
    ]:
        await expect_401(await me(client, value))


async def test_identity_provider_outage_keeps_the_cached_keys(
    jwks, clock, jwks_broker, rsa_key, rsa_key2
):
    jwks.publish(rsa_key, "k1")
    client = await jwks_broker()
    assert (await me(client, signed(rsa_key, "RS256", kid="k1"))).status == 200
    jwks.down = True
    clock.now += 301
    # The refetch fails; users keep working on the keys already known.
    assert (await me(client, signed(rsa_key, "RS256", kid="k1"))).status == 200
    assert jwks.fetches == 2
    jwks.down = False
    jwks.publish(rsa_key2, "k2")
    clock.now += 11
    assert (await me(client, signed(rsa_key2, "RS256", kid="k2"))).status == 200
    assert jwks.fetches == 3


async def test_identity_provider_down_at_start_then_back(jwks, clock, jwks_broker, rsa_key):
    jwks.publish(rsa_key, "k1")
    jwks.down = True
    client = await jwks_broker()
    value = signed(rsa_key, "RS256", kid="k1")
    await expect_401(await me(client, value))
    jwks.down = False
    clock.now += 11
    assert (await me(client, value)).status == 200
    assert jwks.fetches == 2


async def test_hanging_jwks_fetch_is_bounded(jwks, clock, jwks_broker, rsa_key):
    """auth.http_timeout_seconds bounds the fetch: the request is answered
    (401) instead of hanging with the identity provider."""
    jwks.publish(rsa_key, "k1")
    jwks.hang = asyncio.Event()
    client = await jwks_broker("http_timeout_seconds = 0.2\n")
    r = await asyncio.wait_for(me(client, signed(rsa_key, "RS256", kid="k1")), 10)
    await expect_401(r)


async def test_key_without_alg_refuses_another_key_family(
    jwks, clock, jwks_broker, rsa_key, ec_key
):
    """With no "alg" on the published RSA key, a token claiming ES256 under its
    kid is a 401 like any forgery, not a crash in the verifier."""
    jwks.publish(rsa_key, "k1", alg=None)
    client = await jwks_broker()
    assert (await me(client, signed(rsa_key, "RS256", kid="k1"))).status == 200
    assert (await me(client, signed(rsa_key, "PS256", kid="k1"))).status == 200
    forged = signed(ec_key, "ES256", kid="k1")
    await expect_401(await me(client, forged))
    await expect_401(await launch(client, auth(forged)))
    admin = auth(signed(rsa_key, "RS256", kid="k1", sub="root", roles=["admin"]))
    r = await client.get("/api/admin/sessions", headers=admin)
    assert await r.json() == []
