"""Every route of the broker, walked as bob against alice's sessions and
workspaces: nothing of alice's is shown, changed or connected to, and the
answer never tells her session exists (it is the same as for an id that was
never issued). The table below must name every route the app has, so a new
route cannot be added without deciding here what bob gets from it.

What the answers are, by design (DESIGN.md sections 1, 2 and 8):

- REST calls on a session or workspace that is not bob's: 404, byte for
  byte the answer for one that does not exist. Two documented exceptions on
  a workspace bob may use while alice holds it: launch is 409 and stop is
  403; both say only what the workspace list says anyway (``in_use``).
- Admin calls: 403 for bob before any lookup (same for any id).
- The viewer's own calls authenticate a viewer credential, which belongs to
  one session: bob's JWT or live viewer token for alice's session proves
  bob, not her session, so it is not found (404 on ``/info``, CLOSE 516 on
  the tunnel; no failed sign-in), exactly as for a session id never issued,
  and before any guacd connection.
- Pages and static files carry no user data: the same bytes for any id.
- HTML5 apps: nothing of bob's opens alice's app origin, and the web app
  never sees a request.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tests.conftest import auth
from tests.security.conftest import Env

pytestmark = pytest.mark.db

NEVER_ISSUED = str(uuid.UUID(int=0x1234, version=4))


@dataclass
class World:
    env: Env
    alice: str
    bob: str
    a_vnc: dict[str, Any]  # alice's session on the shared desktop
    a_finance: dict[str, Any]  # alice's session on her finance-only desktop
    a_wiki: dict[str, Any]  # alice's HTML5 session
    b_wiki: dict[str, Any]  # bob's own HTML5 session
    a_ended: dict[str, Any]  # an ended session of alice's


@pytest.fixture
async def world(env: Env, token: Callable[..., str]) -> World:
    alice, bob = token("alice", roles=["finance"]), token("bob")
    a_ended = await env.launch(alice, "ws-shared")
    r = await env.api.post(f"/api/sessions/{a_ended['session_id']}/disconnect", alice)
    assert r.status == 200
    return World(
        env,
        alice,
        bob,
        a_vnc=await env.launch(alice, "ws-shared"),
        a_finance=await env.launch(alice, "ws-finance"),
        a_wiki=await env.launch(alice, "ws-wiki-a"),
        b_wiki=await env.launch(bob, "ws-wiki-b"),
        a_ended=a_ended,
    )


async def answer(env: Env, method: str, path: str, token: str | None) -> tuple[int, bytes]:
    headers = auth(token) if token else {}
    async with env.client.request(method, path, headers=headers) as r:
        return r.status, await r.read()


async def same_as_never_issued(
    w: World, method: str, template: str, status: int, sids: list[str] | None = None
) -> None:
    """Bob gets ``status`` for each of alice's sessions, byte-identical to the
    answer for a session id that was never issued."""
    never = await answer(w.env, method, template.format(sid=NEVER_ISSUED), w.bob)
    assert never[0] == status, never
    for sid in sids or [w.a_vnc["session_id"], w.a_finance["session_id"], w.a_ended["session_id"]]:
        assert await answer(w.env, method, template.format(sid=sid), w.bob) == never


async def alice_untouched(w: World) -> None:
    r = await w.env.api.get("/api/sessions/active", w.alice)
    active = {s["id"] for s in r.body}
    assert active == {w.a_vnc["session_id"], w.a_finance["session_id"], w.a_wiki["session_id"]}


def alice_ids(w: World) -> set[str]:
    return {
        w.a_vnc["session_id"],
        w.a_finance["session_id"],
        w.a_wiki["session_id"],
        w.a_ended["session_id"],
    }


# -- one check per route -------------------------------------------------------------


async def check_openapi(w: World) -> None:
    status, _ = await answer(w.env, "GET", "/api/openapi.json", None)
    assert status == 200  # public, the same for everyone


async def check_me(w: World) -> None:
    r = await w.env.api.get("/api/me", w.bob)
    assert (r.status, r.body["user_id"], r.body["roles"]) == (200, "bob", [])


async def check_sessions(w: World) -> None:
    for path in ("/api/sessions", "/api/sessions/active"):
        r = await w.env.api.get(path, w.bob)
        assert r.status == 200
        assert [s["id"] for s in r.body] == [w.b_wiki["session_id"]]
    for sid in alice_ids(w):  # paging from alice's session: as if it did not exist
        r = await w.env.api.get("/api/sessions", w.bob, params={"before": sid})
        never = await w.env.api.get("/api/sessions", w.bob, params={"before": NEVER_ISSUED})
        assert (r.status, r.body) == (never.status, never.body) == (404, never.body)


async def check_session(w: World) -> None:
    await same_as_never_issued(w, "GET", "/api/sessions/{sid}", 404)


async def check_disconnect(w: World) -> None:
    await same_as_never_issued(w, "POST", "/api/sessions/{sid}/disconnect", 404)
    # Bob's own viewer token does not reach alice's session either.
    for sid in alice_ids(w):
        path = f"/api/sessions/{sid}/disconnect"
        mine = await answer(w.env, "POST", path, w.b_wiki["viewer_token"])
        never = await answer(
            w.env, "POST", f"/api/sessions/{NEVER_ISSUED}/disconnect", w.b_wiki["viewer_token"]
        )
        assert mine == never and mine[0] == 404
    await alice_untouched(w)


async def check_workspaces(w: World) -> None:
    r = await w.env.api.get("/api/workspaces", w.bob)
    assert r.status == 200
    assert "ws-finance" not in [ws["id"] for ws in r.body]


async def check_workspace(w: World) -> None:
    for path in ("/api/workspaces/ws-finance", "/api/workspaces/ws-wiki-a-not-here"):
        r = await w.env.api.get(path, w.bob)
        assert (r.status, r.body["detail"]) == (404, "Workspace not found")
    r = await w.env.api.get("/api/workspaces/ws-shared", w.bob)
    assert (r.status, r.body["status"]) == (200, "in_use")  # visible in the list anyway


async def check_launch(w: World) -> None:
    finance = await answer(w.env, "POST", "/api/workspaces/ws-finance/launch", w.bob)
    never = await answer(w.env, "POST", "/api/workspaces/ws-none/launch", w.bob)
    assert finance == never and finance[0] == 404
    r = await w.env.api.post("/api/workspaces/ws-shared/launch", w.bob)
    assert r.status == 409 and "viewer_token" not in r.body  # DESIGN: another user gets 409
    await alice_untouched(w)


async def check_stop(w: World) -> None:
    finance = await answer(w.env, "POST", "/api/workspaces/ws-finance/stop", w.bob)
    never = await answer(w.env, "POST", "/api/workspaces/ws-none/stop", w.bob)
    assert finance == never and finance[0] == 404
    r = await w.env.api.post("/api/workspaces/ws-shared/stop", w.bob)
    assert r.status == 403 and "session" not in r.body  # DESIGN: owner or admin, others 403
    await alice_untouched(w)


async def check_audit(w: World) -> None:
    r = await w.env.api.get("/api/audit", w.bob)
    assert r.status == 200 and r.body
    assert {e["user_id"] for e in r.body} == {"bob"}
    for sid in alice_ids(w):
        r = await w.env.api.get("/api/audit", w.bob, params={"session": sid})
        assert (r.status, r.body) == (200, [])


async def check_admin_sessions(w: World) -> None:
    for params in ({}, {"user": "alice"}, {"workspace": "ws-finance"}):
        r = await w.env.api.get("/api/admin/sessions", w.bob, params=params)
        assert (r.status, r.body["code"]) == (403, "forbidden")


async def check_admin_terminate(w: World) -> None:
    await same_as_never_issued(w, "POST", "/api/admin/sessions/{sid}/terminate", 403)
    await alice_untouched(w)


async def check_admin_audit(w: World) -> None:
    r = await w.env.api.get("/api/admin/audit", w.bob, params={"user": "alice"})
    assert r.status == 403


async def check_public(w: World, path: str) -> None:
    """Health, metrics, pages and static files: no user data, no credential needed."""
    status, body = await answer(w.env, "GET", path, None)
    assert status in (200, 503), (path, status)
    for sid in alice_ids(w):
        assert sid.encode() not in body
    assert b"alice" not in body


async def check_viewer_page(w: World) -> None:
    never = await answer(w.env, "GET", f"/viewer/{NEVER_ISSUED}", w.bob)
    assert never[0] == 200
    for sid in alice_ids(w):
        assert await answer(w.env, "GET", f"/viewer/{sid}", w.bob) == never


async def check_viewer_info(w: World) -> None:
    for credential in (w.bob, w.b_wiki["viewer_token"]):
        never = await answer(w.env, "GET", f"/viewer/{NEVER_ISSUED}/info", credential)
        assert never[0] == 404
        for sid in alice_ids(w):
            assert await answer(w.env, "GET", f"/viewer/{sid}/info", credential) == never


async def tunnel_answer(w: World, sid: str, credential: str) -> tuple[list[str], int, str]:
    ws = await w.env.client.ws_connect(w.env.tunnel(sid, credential), protocols=("guacamole",))
    frames: list[str] = []
    while True:
        msg = await asyncio.wait_for(ws.receive(), 10)
        if msg.type == aiohttp.WSMsgType.TEXT:
            frames.append(msg.data)
        elif msg.type == aiohttp.WSMsgType.CLOSE:
            return frames, int(msg.data), str(msg.extra)
        else:
            return frames, ws.close_code or 0, ""


async def check_viewer_tunnel(w: World) -> None:
    before = w.env.guacd.connections
    for credential in (w.bob, w.b_wiki["viewer_token"]):
        never = await tunnel_answer(w, NEVER_ISSUED, credential)
        assert never[1:] == (1002, "516")
        for sid in alice_ids(w):
            assert await tunnel_answer(w, sid, credential) == never
    assert w.env.guacd.connections == before  # refused before any guacd connection


ROUTES: dict[tuple[str, str], Callable[[World], Awaitable[None]]] = {
    ("GET", "/api/openapi.json"): check_openapi,
    ("GET", "/api/me"): check_me,
    ("GET", "/api/sessions"): check_sessions,
    ("GET", "/api/sessions/active"): check_sessions,
    ("GET", "/api/sessions/{session_id}"): check_session,
    ("POST", "/api/sessions/{session_id}/disconnect"): check_disconnect,
    ("GET", "/api/workspaces"): check_workspaces,
    ("GET", "/api/workspaces/{workspace_id}"): check_workspace,
    ("POST", "/api/workspaces/{workspace_id}/launch"): check_launch,
    ("POST", "/api/workspaces/{workspace_id}/stop"): check_stop,
    ("GET", "/api/audit"): check_audit,
    ("GET", "/api/admin/sessions"): check_admin_sessions,
    ("POST", "/api/admin/sessions/{session_id}/terminate"): check_admin_terminate,
    ("GET", "/api/admin/audit"): check_admin_audit,
    ("GET", "/healthz"): lambda w: check_public(w, "/healthz"),
    ("GET", "/readyz"): lambda w: check_public(w, "/readyz"),
    ("GET", "/metrics"): lambda w: check_public(w, "/metrics"),
    ("GET", "/"): lambda w: check_public(w, "/"),
    ("GET", "/viewer/{session_id}"): check_viewer_page,
    ("GET", "/viewer/{session_id}/info"): check_viewer_info,
    ("GET", "/viewer/{session_id}/websocket-tunnel"): check_viewer_tunnel,
    ("GET", "/static/vendor/guacamole-common.js"): lambda w: check_public(
        w, "/static/vendor/guacamole-common.js"
    ),
    ("GET", "/static"): lambda w: check_public(w, "/static/viewer.js"),
}


def app_routes(env: Env) -> set[tuple[str, str]]:
    found = set()
    for resource in env.client.app.router.resources():
        for route in resource:
            if route.method != "HEAD":  # added with every GET
                found.add((route.method, resource.canonical))
    return found


async def test_every_route_is_in_the_table(env: Env) -> None:
    missing = app_routes(env) - set(ROUTES)
    assert not missing, f"classify these routes in {__name__}: {sorted(missing)}"
    assert not set(ROUTES) - app_routes(env), "the table names routes that no longer exist"


@pytest.mark.parametrize(("method", "route"), list(ROUTES))
async def test_bob_gets_nothing_of_alices(world: World, method: str, route: str) -> None:
    await ROUTES[(method, route)](world)
    await alice_untouched(world)


# -- the HTML5 proxy -----------------------------------------------------------------


async def test_nothing_of_bobs_opens_alices_app(world: World) -> None:
    env = world.env
    bob = env.new_browser()
    signed_in = await env.sign_in(bob, world.b_wiki["session_id"], world.b_wiki["viewer_token"])
    assert signed_in.status == 200
    assert len(list(bob.cookie_jar)) == 1
    (bobs_cookie,) = [c.value for c in bob.cookie_jar]
    alices = env.origin(world.a_wiki["session_id"])
    never = env.origin(NEVER_ISSUED)

    # Bob's viewer token, his cookie, his JWT, alice's ended token: refused at her origin.
    refusals = []
    for path in ("/", "/big?size=10", "/headers", "/__broker/enter"):
        for headers in (
            {"Cookie": f"broker_app={bobs_cookie}"},
            auth(world.bob),
            auth(world.b_wiki["viewer_token"]),
        ):
            async with env.new_browser().get(alices + path, headers=headers) as r:
                refusals.append((path, r.status))
    assert all(s == 401 for p, s in refusals if p != "/__broker/enter")
    for token in (world.b_wiki["viewer_token"], world.a_ended["viewer_token"], world.bob):
        r = await env.sign_in(env.new_browser(), world.a_wiki["session_id"], token)
        n = await env.sign_in(env.new_browser(), NEVER_ISSUED, token)
        assert r.status == 401 and (await r.json()) == (await n.json())
    # Bob's own origin is unaffected, and alice's app never saw a request.
    async with bob.get(env.origin(world.b_wiki["session_id"]) + "/about") as r:
        assert r.status == 200
    assert env.webapp.requests == ["GET /about"]
    assert alices != never


async def test_replayed_viewer_token_opens_nothing(world: World) -> None:
    env = world.env
    sid, token = world.a_wiki["session_id"], world.a_wiki["viewer_token"]
    alice = env.new_browser()
    assert (await env.sign_in(alice, sid, token)).status == 200
    replay = await env.sign_in(env.new_browser(), sid, token)  # someone else replays it
    assert replay.status == 401 and (await replay.json())["code"] == "token_used"
    # After the end, neither the token nor the cookie opens anything.
    for ended in (world.a_wiki, world.a_vnc):
        r = await env.api.post(f"/api/sessions/{ended['session_id']}/disconnect", world.alice)
        assert r.status == 200
    async with alice.get(env.origin(sid) + "/") as r:
        assert r.status == 401 and (await r.json())["code"] == "session_ended"
    assert (await env.sign_in(env.new_browser(), sid, token)).status == 401
    before = env.guacd.connections
    for ended in (world.a_vnc, world.a_ended):
        frames, code, reason = await tunnel_answer(
            world, ended["session_id"], ended["viewer_token"]
        )
        assert not any(f.startswith("0.,36.") for f in frames)
        assert (code, reason) == (1000, "0")  # the session's end, as the viewer shows it
        r = await env.api.post(f"/api/sessions/{ended['session_id']}/disconnect", token)
        assert r.status == 401  # the token died with its session
    assert env.guacd.connections == before
    assert env.webapp.requests == []
