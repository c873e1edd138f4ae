"""Bearer tokens at the API: every forged, stale or misdirected token is a 401
with a JSON detail and a ``WWW-Authenticate: Bearer`` challenge and changes
nothing; real identity-provider setups (PEM keys, a JWKS URL) work; MFA and the
configurable roles claim decide what a user may do."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import broker.core.keys
from tests.conftest import AUDIENCE, ISSUER, TEST_SECRET, auth

pytestmark = pytest.mark.db

LINUX = "/api/workspaces/ws-linux-desktop"
WINDOWS = "/api/workspaces/ws-windows"
FINANCE = "/api/workspaces/ws-finance"
NO_HS256 = {"BROKER_AUTH_HS256_SECRET": ""}
DROP = object()


# -- token crafting ------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(obj: Any) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def claims(**changes: Any) -> dict[str, Any]:
    """Valid claims for the test broker; ``DROP`` removes one."""
    now = int(time.time())
    out: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "email": "alice@example.com",
        "roles": [],
        "amr": ["pwd", "mfa"],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    out.update(changes)
    return {k: v for k, v in out.items() if v is not DROP}


def hs256(payload: dict[str, Any], secret: str = TEST_SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


def hmac_signed(header: dict[str, Any], payload: dict[str, Any], key: bytes) -> str:
    """HS256/HS512 by hand: PyJWT refuses to use a PEM key as an HMAC secret."""
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[header["alg"]]
    signing_input = f"{segment(header)}.{segment(payload)}"
    mac = hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(mac)}"


def unsigned(payload: dict[str, Any], alg: str = "none") -> str:
    return f"{segment({'alg': alg, 'typ': 'JWT'})}.{segment(payload)}."


def tampered() -> str:
    """A real signature, moved onto a payload it was not made for."""
    header, _, signature = hs256(claims()).split(".")
    return f"{header}.{segment(claims(roles=['admin']))}.{signature}"


def signed(key: Any, alg: str, kid: str | None = None, **changes: Any) -> str:
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims(**changes), key, algorithm=alg, headers=headers)


def public_pem(private_key: Any) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_key2() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


# -- helpers -------------------------------------------------------------------


async def expect_401(resp: Any) -> None:
    assert resp.status == 401, await resp.text()
    body = await resp.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def launch(client: Any, headers: dict[str, str], path: str = LINUX) -> Any:
    return await client.post(f"{path}/launch", headers=headers)


async def all_sessions(client: Any, token: Callable[..., str]) -> list[tuple[str, str, str]]:
    r = await client.get("/api/admin/sessions", headers=auth(token("root", roles=["admin"])))
    assert r.status == 200
    return sorted((s["user_id"], s["workspace_id"], s["status"]) for s in await r.json())


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


# -- attacks on the HS256 (development) broker ---------------------------------


def _attacks() -> dict[str, Callable[[], dict[str, str]]]:
    def at(offset: int) -> int:
        # Evaluated when the attack runs, not when the module is collected.
        return int(time.time()) + offset

    def bearer(value: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {value}"}

    return {
        "missing-header": lambda: {},
        "token-scheme": lambda: {"Authorization": f"Token {hs256(claims())}"},
        "bearer-with-nothing": lambda: {"Authorization": "Bearer"},
        "basic": lambda: {"Authorization": "Basic " + b64url(b"alice:correct-horse")},
        "not-a-jwt": lambda: bearer("opaque-value"),
        "alg-none": lambda: bearer(unsigned(claims())),
        "alg-None-admin": lambda: bearer(unsigned(claims(roles=["admin"]), alg="None")),
        "alg-none-with-signature": lambda: bearer(
            unsigned(claims()) + hs256(claims()).split(".")[2]
        ),
        "hs512": lambda: bearer(
            hmac_signed({"alg": "HS512", "typ": "JWT"}, claims(), TEST_SECRET.encode())
        ),
        "expired": lambda: bearer(hs256(claims(iat=at(-900), nbf=at(-900), exp=at(-120)))),
        "not-yet-valid": lambda: bearer(hs256(claims(nbf=at(120)))),
        "wrong-audience": lambda: bearer(hs256(claims(aud="another-service"))),
        "wrong-issuer": lambda: bearer(hs256(claims(iss="https://idp.evil.example"))),
        "missing-sub": lambda: bearer(hs256(claims(sub=DROP))),
        "empty-sub": lambda: bearer(hs256(claims(sub=""))),
        "missing-exp": lambda: bearer(hs256(claims(exp=DROP))),
        "tampered-payload": lambda: bearer(tampered()),
        "other-secret": lambda: bearer(hs256(claims(), secret="another-secret-" + "x" * 32)),
    }


ATTACKS = _attacks()


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_bad_token_is_refused_and_changes_nothing(client, token, attack):
    alice = auth(token("alice"))
    r = await launch(client, alice)
    assert r.status == 201
    session_id = (await r.json())["session_id"]

    bad = ATTACKS[attack]()
    for method, path in [
        ("GET", "/api/sessions"),
        ("GET", "/api/me"),
        ("POST", f"{WINDOWS}/launch"),
        ("POST", f"{LINUX}/stop"),
        ("POST", f"/api/sessions/{session_id}/disconnect"),
        ("GET", "/api/admin/sessions"),
    ]:
        await expect_401(await client.request(method, path, headers=bad))

    # Alice's session is still the only one, still running.
    assert await all_sessions(client, token) == [("alice", "ws-linux-desktop", "active")]
    r = await client.get(WINDOWS, headers=alice)
    assert (await r.json())["status"] == "available"


async def test_challenge_without_credentials_carries_no_error(client):
    r = await client.get("/api/sessions")
    await expect_401(r)
    assert r.headers["WWW-Authenticate"] == "Bearer"
    r = await client.get("/api/sessions", headers={"Authorization": "Bearer x.y.z"})
    await expect_401(r)
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"exp": -10}, id="expired-within-leeway"),
        pytest.param({"nbf": 10}, id="nbf-within-leeway"),
    ],
)
async def test_small_clock_skew_is_tolerated(client, changes):
    now = int(time.time())
    payload = claims(**{k: now + v for k, v in changes.items()})
    r = await client.get("/api/me", headers=auth(hs256(payload)))
    assert r.status == 200, await r.text()
    assert (await r.json())["user_id"] == "alice"


async def test_oversized_token_is_refused(make_settings, start_broker, token):
    client = await start_broker(make_settings("[auth]\nmax_token_bytes = 1024\n"))
    fits = hs256(claims(note="x" * 300))
    too_big = hs256(claims(note="x" * 1200))
    assert len(fits) < 1024 < len(too_big)
    assert (await client.get("/api/me", headers=auth(fits))).status == 200
    await expect_401(await client.get("/api/me", headers=auth(too_big)))
    await expect_401(await launch(client, auth(too_big)))
    assert await all_sessions(client, token) == []


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


# -- MFA -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amr", "verified"),
    [
        (["pwd", "mfa"], True),
        (["otp"], True),
        (["hwk", "pwd"], True),
        (["pwd"], False),
        (DROP, False),
    ],
    ids=["mfa", "otp", "hwk", "pwd-only", "no-amr"],
)
async def test_amr_decides_mfa_verified(client, amr, verified):
    headers = auth(hs256(claims(amr=amr)))
    r = await launch(client, headers)
    assert r.status == 201
    body = await r.json()
    assert body["security"]["mfa_verified"] is verified
    r = await client.get("/api/sessions", headers=headers)
    [session] = await r.json()
    assert session["mfa_verified"] is verified


async def test_require_mfa_refuses_launch_without_mfa(make_settings, start_broker, token):
    client = await start_broker(make_settings("[auth]\nrequire_mfa = true\n"))
    bob = auth(token("bob", mfa=False))
    r = await launch(client, bob)
    assert r.status == 403
    detail = (await r.json())["detail"]
    assert "multi-factor" in detail.lower()
    assert await all_sessions(client, token) == []
    # Seeing is allowed; only launching needs MFA.
    r = await client.get(LINUX, headers=bob)
    assert r.status == 200
    assert (await r.json())["status"] == "available"

    r = await launch(client, auth(token("bob", mfa=True)))
    assert r.status == 201
    assert (await r.json())["security"]["mfa_verified"] is True


# -- roles claim: admin and entitlement -------------------------------------------

ROLE_CLAIMS = {
    "groups": lambda roles: {"groups": roles},
    "realm_access.roles": lambda roles: {"realm_access": {"roles": roles}},
    # Auth0 requires namespaced custom claims, dots included.
    "https://broker.example.com/roles": lambda roles: {"https://broker.example.com/roles": roles},
}


@pytest.fixture(params=list(ROLE_CLAIMS))
async def roles_broker(request, make_settings, start_broker):
    claim = request.param
    client = await start_broker(make_settings(f'[auth]\nroles_claim = "{claim}"\n'))

    def user(sub: str, roles: list[str], *, default_claim: list[str] | None = None) -> dict:
        # ``roles`` go in the configured claim; ``default_claim`` in plain "roles".
        payload = claims(sub=sub, roles=default_claim or [], **ROLE_CLAIMS[claim](roles))
        return auth(hs256(payload))

    return client, user


async def test_roles_claim_decides_admin(roles_broker):
    client, user = roles_broker
    r = await client.get("/api/admin/sessions", headers=user("root", ["admin"]))
    assert r.status == 200
    # "admin" in a claim the broker was not told to read grants nothing.
    r = await client.get(
        "/api/admin/sessions", headers=user("eve", ["staff"], default_claim=["admin"])
    )
    assert r.status == 403
    assert (await r.json())["detail"]


async def test_roles_claim_decides_entitlement(roles_broker):
    client, user = roles_broker
    fred = user("fred", ["finance"])
    olga = user("olga", ["sales"], default_claim=["finance"])

    async def visible(headers: dict) -> list[str]:
        r = await client.get("/api/workspaces", headers=headers)
        return [w["id"] for w in await r.json()]

    assert "ws-finance" not in await visible(olga)
    assert "ws-finance" in await visible(fred)
    for method, path in [
        ("GET", FINANCE),
        ("POST", f"{FINANCE}/launch"),
        ("POST", f"{FINANCE}/stop"),
    ]:
        r = await client.request(method, path, headers=olga)
        assert r.status == 404
        assert (await r.json())["detail"] == "Workspace not found"

    assert (await client.get(FINANCE, headers=fred)).status == 200
    r = await client.post(f"{FINANCE}/launch", headers=fred)
    assert r.status == 201
    session_id = (await r.json())["session_id"]

    # With a session running there, Olga still sees nothing (404, not 403).
    r = await client.post(f"{FINANCE}/stop", headers=olga)
    assert r.status == 404
    r = await client.post(f"{FINANCE}/stop", headers=fred)
    assert r.status == 200
    r = await client.get(f"/api/sessions/{session_id}", headers=fred)
    assert (await r.json())["status"] == "terminated"
