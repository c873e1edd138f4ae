"""Values the schema fuzzer (scripts/fuzz_api.py) found answered with 5xx,
kept as regressions; marked ``db`` so CI runs them on PostgreSQL too, where
a NUL character is refused by the database itself."""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
import pytest

from tests.conftest import AUDIENCE, ISSUER, TEST_SECRET, auth
from tests.security.conftest import Env

pytestmark = pytest.mark.db


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+14:00",  # in UTC, the year before year 1
        "9999-12-31T23:59:59-14:00",  # in UTC, year 10000
        "0001-01-01T00:00:00+23:59",
    ],
)
async def test_timestamps_outside_the_calendar_in_utc_are_422(
    env: Env, token: Callable[..., str], value: str
) -> None:
    admin = token("root", roles=["admin"])
    for path in ("/api/audit", "/api/admin/audit"):
        for name in ("since", "until"):
            r = await env.api.get(path, admin, params={name: value})
            assert r.status == 422 and name in r.body["detail"]
    r = await env.api.get("/api/audit", admin, params={"since": "0001-01-02T00:00:00+14:00"})
    assert r.status == 200


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/audit", "action"),
        ("/api/audit", "session"),
        ("/api/admin/audit", "user"),
        ("/api/admin/sessions", "user"),
        ("/api/admin/sessions", "workspace"),
    ],
)
async def test_nul_in_a_filter_is_never_a_server_error(
    env: Env, token: Callable[..., str], path: str, name: str
) -> None:
    admin = token("root", roles=["admin"])
    await env.launch(admin, "ws-shared")
    r = await env.api.get(path, admin, params={name: "a\x00b"})
    # SQLite stores NUL, so nothing matches; PostgreSQL refuses the value.
    assert (r.status, r.body) == (200, []) or (r.status, r.body["code"]) == (422, "unprocessable")
    assert (await env.api.get("/api/sessions/active", admin)).status == 200  # no outage


def signed(**claims: object) -> str:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 600}
    return jwt.encode({**base, **claims}, TEST_SECRET, algorithm="HS256")


async def test_control_characters_in_identity_claims(env: Env) -> None:
    r = await env.client.get("/api/me", headers=auth(signed(sub="ali\x00ce")))
    assert r.status == 401
    r = await env.client.get("/api/me", headers=auth(signed(sub="alice\n")))
    assert r.status == 401
    token = signed(sub="alice", email="alice\x00@example.com")
    launched = await env.api.launch("ws-shared", token)
    assert launched.status == 201 and launched.body["session"]["user_email"] == ""
