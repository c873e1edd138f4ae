"""No 500s from input: a JSON body nested deeper than the parser can recurse,
and a request target that is not a path (``OPTIONS *``, absolute-form,
authority-form), are a JSON 400 on the broker's origin and on an HTML5 app's
origin alike (signed in or not), and change nothing. (A target aiohttp's
parser refuses itself, e.g. ``GET healthz``, is its plain 400, see
test_request_limits.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from tests.conftest import auth
from tests.security.conftest import Env

pytestmark = pytest.mark.db


async def raw(port: int, request: bytes) -> tuple[int, str, bytes]:
    """Send ``request`` as is; the status, the content type and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    types = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-type:")]
    content_type = types[0].split(b":", 1)[1].strip().decode() if types else ""
    return status, content_type, body


def _detail(content_type: str, body: bytes) -> str:
    assert content_type.startswith("application/json"), (content_type, body)
    detail: str = json.loads(body)["detail"]
    return detail


@pytest.mark.parametrize("shape", ["arrays", "objects", "mixed"])
async def test_a_deeply_nested_launch_body_is_a_400(
    env: Env, token: Callable[..., str], shape: str
) -> None:
    depth = 30_000  # 60 KB: under server.max_body_bytes
    body = {
        "arrays": "[" * depth + "]" * depth,
        "objects": '{"a":' * depth + "1" + "}" * depth,
        "mixed": '[{"a":' * (depth // 2) + "1" + "}]" * (depth // 2),
    }[shape]
    assert len(body) < env.settings.server.max_body_bytes * 4
    r = await env.client.post(
        "/api/workspaces/ws-shared/launch",
        data=body[: env.settings.server.max_body_bytes],
        headers={"Content-Type": "application/json", **auth(token("alice"))},
    )
    assert r.status == 400, await r.text()
    assert "nests deeper" in (await r.json())["detail"]
    assert (await env.api.get("/api/sessions", token("alice"))).body == []
    # Nesting that a real client would send still works.
    ok = "[" * 20 + "]" * 20
    r = await env.client.post(
        "/api/workspaces/ws-shared/launch",
        data='{"options": ' + ok + "}",
        headers={"Content-Type": "application/json", **auth(token("alice"))},
    )
    assert r.status == 201, await r.text()


async def test_a_deeply_nested_sign_in_body_is_a_400(env: Env, token: Callable[..., str]) -> None:
    launched = await env.launch(token("alice"), "ws-wiki-a")
    sid = launched["session_id"]
    browser = env.new_browser()
    r = await browser.post(
        env.origin(sid) + "/__broker/session",
        data="[" * 4000,
        headers={
            "Content-Type": "application/json",
            "Origin": env.origin(sid),
            "Sec-Fetch-Site": "same-origin",
        },
    )
    assert r.status == 400, await r.text()
    assert "nests deeper" in (await r.json())["detail"]
    assert not list(browser.cookie_jar)  # not signed in


TARGETS = {
    "asterisk": "OPTIONS * HTTP/1.1",
    "absolute": "GET http://127.0.0.1/ HTTP/1.1",
    "authority": "CONNECT 127.0.0.1:22 HTTP/1.1",
}


@pytest.mark.parametrize("form", sorted(TARGETS))
async def test_a_request_target_that_is_not_a_path_is_a_json_400(
    env: Env, token: Callable[..., str], form: str
) -> None:
    launched = await env.launch(token("alice"), "ws-wiki-a")
    sid = launched["session_id"]
    browser = env.new_browser()
    assert (await env.sign_in(browser, sid, launched["viewer_token"])).status == 200
    (cookie,) = list(browser.cookie_jar)
    seen_by_app = len(env.webapp.requests)

    hosts = {
        "the broker's origin": (f"localhost:{env.port}", ""),
        "an app origin, signed in": (
            f"{sid}.localhost:{env.port}",
            f"Cookie: {cookie.key}={cookie.value}\r\n",
        ),
        "an app origin, no cookie": (f"{sid}.localhost:{env.port}", ""),
    }
    for where, (host, extra) in hosts.items():
        sent = f"{TARGETS[form]}\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n".encode()
        status, content_type, body = await raw(env.port, sent)
        assert status == 400, (where, status, body)
        assert _detail(content_type, body), where
    assert len(env.webapp.requests) == seen_by_app  # the app never saw one
    r = await browser.get(env.origin(sid) + "/")
    assert r.status == 200  # the session's app still works
