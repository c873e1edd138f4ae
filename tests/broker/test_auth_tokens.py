"""Bearer tokens at the API: every forged, stale or misdirected token is a 401
with a JSON detail and a ``WWW-Authenticate: Bearer`` challenge and changes
nothing; small clock skew is tolerated, oversized tokens are not."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.broker.auth_support import (
    DROP,
    LINUX,
    WINDOWS,
    all_sessions,
    b64url,
    claims,
    expect_401,
    hmac_signed,
    hs256,
    launch,
    tampered,
    unsigned,
)
from tests.conftest import TEST_SECRET, auth

pytestmark = pytest.mark.db


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
