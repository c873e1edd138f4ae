"""Tokens for the authentication tests: valid claims to change one at a time,
tokens signed, forged or left unsigned by hand, and the checks every refusal
must pass (a 401 with a JSON detail and a ``WWW-Authenticate: Bearer``
challenge)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from tests.conftest import AUDIENCE, ISSUER, TEST_SECRET, auth

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
