"""Request size limits: bodies past ``server.max_body_bytes`` are a JSON 413,
headers past `broker.web.guard.max_header_bytes` a JSON 431; what aiohttp's
parser refuses itself (a line past its limit, too many headers, garbage) is
its plain 400 and a closed connection. Never a 500, and nothing the client
sent ends up in the log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from broker.web.guard import max_header_bytes
from tests.conftest import auth
from tests.security.conftest import Env

pytestmark = pytest.mark.db

SECRET = "eyJTopSecretValue0123456789abcdefghijklmnop"


async def raw(env: Env, request: bytes) -> tuple[int, bytes, bytes]:
    """Send ``request`` as is; the status, the headers and the body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head, body


def request(
    path: str = "/api/me", headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: localhost", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def test_body_past_the_limit_is_a_json_413(env: Env, token: Callable[..., str]) -> None:
    limit = env.settings.server.max_body_bytes
    headers = {"Content-Type": "application/json", **auth(token("alice"))}
    big = b'{"x": "' + b"a" * limit + b'"}'
    r = await env.client.post("/api/workspaces/ws-shared/launch", data=big, headers=headers)
    assert r.status == 413 and (await r.json())["detail"] == "Request body too large"

    async def chunks():  # no Content-Length: counted as it arrives
        for _ in range(limit // 1024 + 2):
            yield b" " * 1024

    r = await env.client.post("/api/workspaces/ws-shared/launch", data=chunks(), headers=headers)
    assert r.status == 413 and r.content_type == "application/json"
    # Nothing was launched; a body on a call that reads none is simply ignored.
    assert (await env.api.get("/api/sessions", token("alice"))).body == []
    r = await env.client.post(
        "/api/sessions/00000000-0000-4000-8000-000000000000/disconnect",
        data=b"a" * (limit * 4),
        headers=auth(token("alice")),
    )
    assert r.status == 404 and r.content_type == "application/json"


async def test_headers_past_the_limit_are_a_json_431(env: Env, token: Callable[..., str]) -> None:
    limit = max_header_bytes(env.settings)
    many = {f"X-Filler-{i}": "f" * 1000 for i in range(limit // 1000 + 1)}
    r = await env.client.get("/api/me", headers={**many, **auth(token("alice"))})
    assert r.status == 431
    assert (await r.json())["code"] == "headers_too_large"
    fits = {f"X-Filler-{i}": "f" * 1000 for i in range(limit // 2000)}
    r = await env.client.get("/api/me", headers={**fits, **auth(token("alice"))})
    assert r.status == 200


@pytest.mark.parametrize(
    "case",
    ["long-request-line", "long-header", "too-many-headers", "bad-method", "bad-content-length"],
)
async def test_what_the_parser_refuses_is_a_400_and_not_logged(
    env: Env, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    caplog.set_level(logging.DEBUG)
    tunnel = "/viewer/00000000-0000-4000-8000-000000000000/websocket-tunnel"
    sent = {
        "long-request-line": request(f"{tunnel}?token={SECRET}&pad={'p' * 9000}"),
        "long-header": request(headers={"Authorization": f"Bearer {SECRET}{'p' * 20000}"}),
        "too-many-headers": request(
            headers={"Authorization": f"Bearer {SECRET}", **{f"X-H{i}": "1" for i in range(200)}}
        ),
        "bad-method": b"G\x00T /?token=" + SECRET.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        "bad-content-length": request(headers={"Content-Length": "-1", "Cookie": SECRET}),
    }[case]
    status, _head, _body = await raw(env, sent)
    assert status == 400
    assert SECRET not in caplog.text
    assert SECRET[:12] not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert (await env.client.get("/healthz")).status == 200
