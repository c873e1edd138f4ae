"""What each credential proves, asked of `Credentials` directly (the HTTP
tests check the same answers through the API, the viewer and the proxy)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from broker.core.audit import Action, Actor
from broker.core.auth import Principal, mint_dev_token
from broker.core.credentials import Credentials, SessionUser
from broker.core.errors import Forbidden, NotFound, Unauthorized
from broker.core.models import EndReason, ViewerToken, utcnow
from tests.broker.machine import Machine, StartMachine, user
from tests.conftest import AUDIENCE, TEST_SECRET
from tunnels.direct import DirectProvider

pytestmark = pytest.mark.db

Token = Callable[..., str]


@pytest.fixture
async def m(start_machine: StartMachine) -> Machine:
    return await start_machine(DirectProvider())


async def test_a_viewer_token_proves_its_session_until_it_ends(m: Machine) -> None:
    launched = await m.launch("ws-linux")
    sid, token = launched.session.id, launched.viewer_token
    other = await m.launch("ws-rdp")

    assert (await m.credentials.viewer_session(sid, token)).id == sid
    assert (await m.credentials.session_for_viewer_token(token)).id == sid
    # A live token of another session proves a user, just not this session's.
    with pytest.raises(NotFound, match="Session not found"):
        await m.credentials.viewer_session(sid, other.viewer_token)

    await m.sessions.end(sid, EndReason.USER_DISCONNECT, Actor.system())

    with pytest.raises(Unauthorized, match="Invalid or expired viewer token"):
        await m.credentials.session_for_viewer_token(token)
    # The viewer still learns which session it was, to show why it ended.
    ended = await m.credentials.viewer_session(sid, token)
    assert (ended.id, ended.end_reason) == (sid, "user_disconnect")


async def viewer_token_rows(m: Machine, session_id: str) -> int:
    async with m.db() as db:
        count = await db.scalar(
            select(func.count())
            .select_from(ViewerToken)
            .where(ViewerToken.session_id == session_id)
        )
    return count or 0


async def test_relaunches_replace_the_viewer_token_instead_of_piling_up_rows(m: Machine) -> None:
    first = await m.launch("ws-linux")
    sid = first.session.id
    relaunches = [await m.launch("ws-linux") for _ in range(5)]

    assert {r.session.id for r in relaunches} == {sid}
    assert await viewer_token_rows(m, sid) == 1
    # The newest link works; the ones it replaced prove nothing any more.
    assert (await m.credentials.viewer_session(sid, relaunches[-1].viewer_token)).id == sid
    for old in [first, *relaunches[:-1]]:
        with pytest.raises(Unauthorized, match="Invalid viewer credential"):
            await m.credentials.viewer_session(sid, old.viewer_token)


async def test_concurrent_relaunches_leave_one_working_viewer_token(m: Machine) -> None:
    sid = (await m.launch("ws-rdp")).session.id

    results = await asyncio.gather(*(m.launch("ws-rdp") for _ in range(6)))

    assert await viewer_token_rows(m, sid) == 1
    working = []
    for r in results:
        try:
            await m.credentials.session_for_viewer_token(r.viewer_token)
        except Unauthorized:
            continue
        working.append(r.viewer_token)
    assert len(working) == 1


async def test_a_jwt_views_only_its_owners_sessions(m: Machine, token: Token) -> None:
    sid = (await m.launch("ws-linux")).session.id

    assert (await m.credentials.viewer_session(sid, token("alice"))).id == sid
    # A valid JWT of another user is no failed sign-in: the session is not found.
    with pytest.raises(NotFound, match="Session not found"):
        await m.credentials.viewer_session(sid, token("bob"))
    with pytest.raises(NotFound, match="Session not found"):
        await m.credentials.viewer_session("not-a-session", token("alice"))
    with pytest.raises(Unauthorized, match="Invalid viewer credential"):
        await m.credentials.viewer_session(sid, "not-a-token")
    with pytest.raises(Unauthorized):
        await m.credentials.viewer_session(sid, token("alice", ttl=-60))


async def test_a_viewer_token_opens_streams_until_its_launching_jwt_expires(m: Machine) -> None:
    start = utcnow()
    now = [start]
    credentials = Credentials(m.db, m.auth, m.settings, clock=lambda: now[0])
    alice = Principal(
        "alice", "alice@example.com", frozenset(), False, True, start + timedelta(minutes=5)
    )
    desktop = await m.launch("ws-linux", alice)
    wiki = await m.launch("ws-wiki", alice)
    sid, token = desktop.session.id, desktop.viewer_token

    assert (await credentials.viewer_session(sid, token)).id == sid
    now[0] = start + timedelta(minutes=5)
    with pytest.raises(Unauthorized, match="Invalid or expired viewer token"):
        await credentials.viewer_session(sid, token)
    with pytest.raises(Unauthorized, match="Invalid or expired viewer token"):
        await credentials.exchange_viewer_token(wiki.viewer_token, wiki.session.id, "cookie-1")
    # Ending its own session is no stream: that it may still do.
    assert (await credentials.session_user(sid, token)).user_id == "alice"


async def test_who_may_act_on_a_session(m: Machine, token: Token) -> None:
    launched = await m.launch("ws-linux")
    sid = launched.session.id
    other = await m.launch("ws-rdp", user("bob"))

    alice = SessionUser("alice", "alice@example.com")
    assert await m.credentials.session_user(sid, launched.viewer_token) == alice
    assert await m.credentials.session_user(sid, token("alice")) == alice
    # A JWT proves its user; whether the session is theirs is the caller's check.
    bob = await m.credentials.session_user(sid, token("bob"))
    assert bob == SessionUser("bob", "bob@example.com")
    with pytest.raises(NotFound, match="Session not found"):
        await m.credentials.session_user(sid, other.viewer_token)
    with pytest.raises(NotFound):
        await m.sessions.disconnect(bob.user_id, sid, Actor(bob.user_id, bob.email))


async def test_a_viewer_token_is_traded_once_for_an_app_cookie(m: Machine) -> None:
    launched = await m.launch("ws-wiki")
    sid, token = launched.session.id, launched.viewer_token
    desktop = await m.launch("ws-linux")

    with pytest.raises(Unauthorized, match="Not signed in to this workspace"):
        await m.credentials.app_session(sid, ["cookie-1"])
    with pytest.raises(Forbidden, match="not an HTML5 web app"):
        await m.credentials.exchange_viewer_token(
            desktop.viewer_token, desktop.session.id, "cookie-0"
        )
    assert (await m.credentials.exchange_viewer_token(token, sid, "cookie-1")).id == sid
    with pytest.raises(Unauthorized) as again:
        await m.credentials.exchange_viewer_token(token, sid, "cookie-2")
    assert again.value.code == "token_used"

    assert (await m.credentials.app_session(sid, ["stale", "cookie-1"])).id == sid
    with pytest.raises(Unauthorized) as unknown:
        await m.credentials.app_session(sid, ["cookie-2"])
    assert unknown.value.code == "not_signed_in"
    assert len(await m.audit(session_id=sid, action=Action.OPEN_APP)) == 1

    await m.sessions.end(sid, EndReason.ADMIN_TERMINATE, Actor.system())
    with pytest.raises(Unauthorized) as ended:
        await m.credentials.app_session(sid, ["cookie-1"])
    assert ended.value.code == "session_ended"


async def test_the_broker_credentials_a_proxied_app_must_not_see(m: Machine, token: Token) -> None:
    launched = await m.launch("ws-wiki")
    foreign = mint_dev_token(
        TEST_SECRET,
        issuer="someone-else",
        audience=AUDIENCE,
        sub="alice",
        email="alice@example.com",
    )
    is_broker = m.credentials.is_broker_credential

    assert await is_broker(token("alice"), [])
    assert await is_broker(token("mallory", ttl=-60), [])  # expired, still the broker's
    assert not await is_broker(foreign, [])
    assert await is_broker("cookie-1", ["cookie-1"])
    assert await is_broker(launched.viewer_token, [])
    assert not await is_broker("the app's own token", [])

    await m.sessions.end(launched.session.id, EndReason.ADMIN_TERMINATE, Actor.system())
    assert not await is_broker(launched.viewer_token, [])


async def test_only_a_jwt_names_a_user(m: Machine, token: Token) -> None:
    viewer_token = (await m.launch("ws-linux")).viewer_token

    assert (await m.credentials.principal(token("alice"))).user_id == "alice"
    with pytest.raises(Unauthorized, match="Invalid token"):
        await m.credentials.principal(viewer_token)
    assert await m.credentials.verifies(token("alice"))
    assert not await m.credentials.verifies(viewer_token)
    assert not await m.credentials.verifies(token("alice", ttl=-60))
    assert m.credentials.claimed_subject(token("alice", ttl=-60)) == "alice"
    assert m.credentials.claimed_subject(viewer_token) is None
    assert m.credentials.claimed_subject("a.b.c") is None
