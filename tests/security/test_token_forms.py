"""The gaps tests/broker/test_auth_*.py leave: a valid token presented where
the API does not take it (query string, cookie, other headers, no scheme),
and forged tokens presented to the viewer's own endpoints, which take JWTs
in the ``token`` query parameter. All refused, nothing launched, no guacd
connection."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
import pytest

from tests.conftest import AUDIENCE, ISSUER, TEST_SECRET, auth
from tests.security.conftest import Env

pytestmark = pytest.mark.db


def b64(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    out = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "nbf": now, "exp": now + 600}
    out.update(changes)
    return out


def forged_tokens() -> dict[str, str]:
    good = jwt.encode(claims(), TEST_SECRET, algorithm="HS256")
    header, payload, signature = good.split(".")
    return {
        "alg-none": f"{b64({'alg': 'none'})}.{payload}.",
        "tampered": f"{header}.{b64(claims(sub='alice', roles=['admin']))}.{signature}",
        "other-secret": jwt.encode(claims(), "x" * 48, algorithm="HS256"),
        "expired": jwt.encode(claims(exp=int(time.time()) - 300), TEST_SECRET, algorithm="HS256"),
        "wrong-audience": jwt.encode(claims(aud="other"), TEST_SECRET, algorithm="HS256"),
        "unknown-kid": jwt.encode(claims(), "y" * 48, algorithm="HS256", headers={"kid": "k9"}),
        "huge": jwt.encode(claims(pad="p" * 9000), TEST_SECRET, algorithm="HS256"),
    }


@pytest.mark.parametrize(
    "placement",
    [
        "query-access_token",
        "query-token",
        "cookie",
        "x-auth-token",
        "no-scheme",
        "two-tokens",
        "trailing-garbage",
        "second-authorization-header",
    ],
)
async def test_valid_token_in_the_wrong_place_is_401(
    env: Env, token: Callable[..., str], placement: str
) -> None:
    t = token("alice")
    params: dict[str, str] = {}
    headers: dict[str, str] = {}
    if placement == "query-access_token":
        params["access_token"] = t
    elif placement == "query-token":
        params["token"] = t
    elif placement == "cookie":
        headers["Cookie"] = f"token={t}; access_token={t}; broker_app={t}"
    elif placement == "x-auth-token":
        headers["X-Auth-Token"] = t
    elif placement == "no-scheme":
        headers["Authorization"] = t
    elif placement == "two-tokens":
        headers["Authorization"] = f"Bearer {t} {t}"
    elif placement == "trailing-garbage":
        headers["Authorization"] = f"Bearer {t}x"
    for method, path in [
        ("GET", "/api/me"),
        ("GET", "/api/sessions"),
        ("POST", "/api/workspaces/ws-shared/launch"),
    ]:
        if placement == "second-authorization-header":
            raw = [("Authorization", "Bearer not-a-token"), ("Authorization", f"Bearer {t}")]
            r = await env.client.request(method, path, headers=raw)
        else:
            r = await env.client.request(method, path, params=params, headers=headers)
        assert r.status == 401, (placement, path, await r.text())
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await env.api.get("/api/sessions", t)).body == []


@pytest.mark.parametrize("forgery", list(forged_tokens()))
async def test_forged_tokens_open_no_viewer(
    env: Env, token: Callable[..., str], forgery: str
) -> None:
    launched = await env.launch(token("alice"), "ws-shared")
    sid = launched["session_id"]
    bad = forged_tokens()[forgery]
    try:
        ws = await env.client.ws_connect(env.tunnel(sid, bad), protocols=("guacamole",))
    except aiohttp.WSServerHandshakeError as exc:
        # Past max_token_bytes the request line is past aiohttp's limit too.
        assert (forgery, exc.status) == ("huge", 400)
    else:
        frames = [msg.data async for msg in ws]
        assert ws.close_code == 1008
        assert not any(f.startswith("0.,36.") for f in frames)
    assert (await env.client.get(f"/viewer/{sid}/info", headers=auth(bad))).status == 401
    r = await env.client.post(f"/api/sessions/{sid}/disconnect", headers=auth(bad))
    assert r.status == 401
    assert env.guacd.connections == 0
    s = await env.api.get(f"/api/sessions/{sid}", token("alice"))
    assert s.body["status"] == "active"
