"""Rules hold at every connect, not only at launch: whatever opens a stream
(the viewer tunnel, ``/viewer/<id>/info``, the HTML5 sign-in exchange and
every request an app cookie signs) must satisfy the workspace's roles and MFA
rule for the user at that moment.

- A JWT proves what it proves now: a password-only token of the session's
  owner, or one without the role the workspace requires, opens nothing.
- A viewer token proves what the JWT that launched it proved, and only until
  that JWT's ``exp``; an app cookie, what the viewer token it was traded for
  recorded. Rules changed since launch (another broker with the new config on
  the same database) refuse both at their next use.
- A valid credential of another user on someone's ``/info`` is a 404 and no
  failed sign-in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests.conftest import auth
from tests.security.conftest import Env

pytestmark = pytest.mark.db

Token = Callable[..., str]
REQUIRE_MFA = "[auth]\nrequire_mfa = true\n"


async def tunnel(env: Env, sid: str, credential: str) -> tuple[list[str], int, str]:
    """What the viewer gets: the frames before the close, and the close."""
    ws = await env.client.ws_connect(env.tunnel(sid, credential), protocols=("guacamole",))
    frames: list[str] = []
    while True:
        msg = await asyncio.wait_for(ws.receive(), 10)
        if msg.type == aiohttp.WSMsgType.TEXT:
            frames.append(msg.data)
            if "4.sync," in msg.data:  # streaming: the desktop is shown
                await ws.close()
                return frames, 1000, "streaming"
        elif msg.type == aiohttp.WSMsgType.CLOSE:
            return frames, int(msg.data), str(msg.extra)
        else:
            return frames, ws.close_code or 0, ""


async def info(env: Env, sid: str, credential: str) -> tuple[int, dict[str, Any]]:
    async with env.client.get(f"/viewer/{sid}/info", headers=auth(credential)) as r:
        return r.status, await r.json()


async def refused_as_forbidden(env: Env, sid: str, credential: str, why: str) -> None:
    """403 on ``/info``; the tunnel closes with CLIENT_FORBIDDEN (771) and says
    why, before any guacd connection."""
    before = env.guacd.connections
    status, body = await info(env, sid, credential)
    assert status == 403 and why in body["detail"], body
    frames, code, reason = await tunnel(env, sid, credential)
    assert (code, reason) == (1008, "771")
    assert len(frames) == 1 and frames[0].startswith("5.error,") and why in frames[0]
    assert env.guacd.connections == before


async def test_require_mfa_holds_at_every_connect(make_env: Any, token: Token) -> None:
    env: Env = await make_env(REQUIRE_MFA)
    launched = await env.launch(token("alice"), "ws-shared")  # with MFA
    sid = launched["session_id"]

    # The same user's password-only token opens nothing of the running session.
    await refused_as_forbidden(env, sid, token("alice", mfa=False), "Multi-factor")
    # The launch's own credentials still do.
    assert (await info(env, sid, launched["viewer_token"]))[0] == 200
    assert (await tunnel(env, sid, token("alice")))[1:] == (1000, "streaming")


async def test_a_lost_role_opens_no_viewer(make_env: Any, token: Token) -> None:
    env: Env = await make_env()
    launched = await env.launch(token("alice", roles=["finance"]), "ws-finance")
    sid = launched["session_id"]

    await refused_as_forbidden(env, sid, token("alice", roles=["sales"]), "not allowed")
    assert (await tunnel(env, sid, token("alice", roles=["finance"])))[1:] == (1000, "streaming")


async def test_a_viewer_token_lives_no_longer_than_the_jwt_that_launched_it(
    make_env: Any, token: Token
) -> None:
    """Launched with a JWT that expired 5 s ago (still inside the broker's
    clock leeway): its viewer token is already past that JWT's ``exp``."""
    env: Env = await make_env()
    alice = token("alice", roles=["finance"], ttl=-5)
    desktop = await env.launch(alice, "ws-finance")
    wiki = await env.launch(alice, "ws-wiki-a")

    sid, viewer_token = desktop["session_id"], desktop["viewer_token"]
    assert (await info(env, sid, viewer_token))[0] == 401
    assert (await tunnel(env, sid, viewer_token))[1:] == (1008, "769")
    signed_in = await env.sign_in(env.new_browser(), wiki["session_id"], wiki["viewer_token"])
    assert signed_in.status == 401
    assert env.guacd.connections == 0 and env.webapp.requests == []
    # It may still end its own session.
    r = await env.api.post(f"/api/sessions/{sid}/disconnect", viewer_token)
    assert r.status == 200


async def test_rules_changed_since_launch_refuse_viewer_tokens_and_app_cookies(
    make_env: Any, token: Token
) -> None:
    before: Env = await make_env()
    alice = token("alice", mfa=False)  # fine while MFA is not required
    desktop = await before.launch(alice, "ws-shared")
    wiki = await before.launch(alice, "ws-wiki-a")
    other_wiki = await before.launch(alice, "ws-wiki-b")
    browser = before.new_browser()
    assert (await before.sign_in(browser, wiki["session_id"], wiki["viewer_token"])).status == 200
    async with browser.get(before.origin(wiki["session_id"]) + "/about") as r:
        assert r.status == 200

    # The same database, now served with MFA required.
    after: Env = await make_env(REQUIRE_MFA)
    await refused_as_forbidden(
        after, desktop["session_id"], desktop["viewer_token"], "Multi-factor"
    )
    async with browser.get(after.origin(wiki["session_id"]) + "/about") as r:
        assert r.status == 403
        assert (await r.json())["code"] == "mfa_required"
    wiki_b = other_wiki["session_id"]
    r = await after.sign_in(after.new_browser(), wiki_b, other_wiki["viewer_token"])
    assert r.status == 403 and (await r.json())["code"] == "mfa_required"
    assert after.webapp.requests == ["GET /about"]  # only the request before the change
    # A refused exchange spends nothing: under the old rules the token still works.
    r = await before.sign_in(before.new_browser(), wiki_b, other_wiki["viewer_token"])
    assert r.status == 200


async def test_another_users_valid_token_on_info_is_not_found_and_no_failed_sign_in(
    make_env: Any, token: Token
) -> None:
    env: Env = await make_env(
        env={
            "BROKER_RATELIMIT_IP_AUTH_FAILURE_BURST": "2",
            "BROKER_RATELIMIT_IP_AUTH_FAILURES_PER_MINUTE": "1",
        }
    )
    alices = (await env.launch(token("alice"), "ws-shared"))["session_id"]
    bobs = await env.launch(token("bob"), "ws-wiki-a")
    for credential in (token("bob"), bobs["viewer_token"]) * 2:
        status, body = await info(env, alices, credential)
        assert (status, body["detail"]) == (404, "Session not found")
    # Four refusals and no 429: none of them was a failed sign-in.
    assert (await info(env, bobs["session_id"], bobs["viewer_token"]))[0] == 200
    assert (await env.client.get("/api/me", headers=auth(token("bob")))).status == 200
