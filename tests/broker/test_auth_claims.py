"""What a token's claims decide: ``amr`` whether the session counts as
MFA-verified (and, with ``require_mfa``, whether it may launch), and the
configured roles claim who is an admin and who is entitled to a workspace."""

from __future__ import annotations

import pytest

from tests.broker.auth_support import (
    DROP,
    FINANCE,
    LINUX,
    all_sessions,
    claims,
    hs256,
    launch,
)
from tests.conftest import auth

pytestmark = pytest.mark.db


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


# -- the shape of claims ------------------------------------------------------------

NOW = 1_700_000_000  # a time in the past, as a number


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": "9999999999"},
        {"nbf": "1700000000"},
        {"iat": "1700000000"},
        {"nbf": True},
        {"iat": False},
        {"exp": [9999999999]},
    ],
    ids=["exp-string", "nbf-string", "iat-string", "nbf-true", "iat-false", "exp-list"],
)
async def test_time_claims_must_be_numbers(client, changes):
    """RFC 7519 NumericDate: PyJWT alone takes ``"9999999999"`` and ``true``."""
    r = await client.get("/api/me", headers=auth(hs256(claims(**changes))))
    assert r.status == 401
    assert (await r.json())["detail"] in ("Invalid token", "Invalid or expired token")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    # The same claims as numbers are fine (fractions too).
    ok = claims(iat=NOW + 0.5, nbf=NOW)
    assert (await client.get("/api/me", headers=auth(hs256(ok)))).status == 200


@pytest.mark.parametrize(
    "char",
    ["\u202e", "\u200b", "\u2066", "\ufeff", "\x85"],
    ids=["RLO", "ZWSP", "LRI", "BOM", "NEL"],
)
async def test_format_and_bidi_characters_in_identity_claims(client, char):
    """A ``sub`` that would display as another user's (``alice<U+202E>...``) is
    refused; such an email is dropped, as one with control characters is."""
    r = await client.get("/api/me", headers=auth(hs256(claims(sub=f"alice{char}"))))
    assert r.status == 401
    assert (await r.json())["detail"] == "Invalid token"
    headers = auth(hs256(claims(email=f"alice{char}moc.elpmaxe@example.com")))
    r = await client.get("/api/me", headers=headers)
    assert r.status == 200
    assert (await r.json())["email"] == ""
    r = await launch(client, headers)
    assert r.status == 201 and (await r.json())["session"]["user_email"] == ""
