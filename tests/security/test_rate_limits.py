"""``[ratelimit]``: launches and failed sign-ins, per user and per address,
answered 429 with ``Retry-After`` and a JSON detail (`broker.web.guard`), and the
token buckets underneath (`broker.web.ratelimit`)."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import pytest

from broker.config import RateLimitSettings
from broker.core.errors import ConfigError
from broker.web.ratelimit import Bucket, retry_after
from tests.conftest import auth
from tests.scrape import value
from tests.security.conftest import Env

pytestmark = pytest.mark.db

BAD = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJl"  # sub bob, not signed by us


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the buckets ---------------------------------------------------------------------


def test_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    bucket = Bucket(per_minute=6, burst=3, clock=clock)  # one token every 10 s
    assert [bucket.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("a") == pytest.approx(10.0)
    assert bucket.peek("b") == 0.0  # keys are independent
    clock.now += 4
    assert bucket.peek("a") == pytest.approx(6.0)
    clock.now += 6
    assert bucket.take("a") == 0.0
    assert bucket.take("a") == pytest.approx(10.0)


def test_bucket_forgets_full_keys_and_stays_bounded() -> None:
    clock = Clock()
    bucket = Bucket(per_minute=60, burst=2, max_keys=100, clock=clock)
    for i in range(10_000):
        bucket.take(f"addr-{i}")
    assert len(bucket) == 100  # the least recently seen went first
    clock.now += 5
    bucket.peek("addr-9999")
    assert len(bucket) == 99  # full again: the same as never seen


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert [retry_after(w) for w in (0.01, 1.0, 1.2, 59.9)] == [1, 1, 2, 60]


@pytest.mark.parametrize("name", ["user_launch_burst", "ip_auth_failures_per_minute", "max_keys"])
def test_settings_must_be_positive(name: str) -> None:
    with pytest.raises(ConfigError, match=f"ratelimit.{name}"):
        RateLimitSettings(**{name: 0})


# -- at the HTTP edge ----------------------------------------------------------------


def limits(**values: float) -> dict[str, str]:
    return {f"BROKER_RATELIMIT_{k.upper()}": str(v) for k, v in values.items()}


async def expect_429(resp: aiohttp.ClientResponse, retry_at_most: int) -> dict[str, str]:
    assert resp.status == 429, await resp.text()
    body: dict[str, str] = await resp.json()
    assert body["detail"] and body["code"] == "too_many_requests"
    assert 1 <= int(resp.headers["Retry-After"]) <= retry_at_most
    return body


async def test_failed_sign_ins_from_one_address(make_env, token: Callable[..., str]) -> None:
    env: Env = await make_env(env=limits(ip_auth_failure_burst=3, ip_auth_failures_per_minute=1))
    for _ in range(3):
        assert (await env.client.get("/api/me", headers=auth("not-a-token"))).status == 401
    # The address is now refused whatever it presents, before the check ...
    await expect_429(await env.client.get("/api/me", headers=auth(BAD)), 60)
    await expect_429(await env.client.get("/api/me", headers=auth(token("alice"))), 60)
    launched = await env.client.post(
        "/api/workspaces/ws-shared/launch", headers=auth(token("alice"))
    )
    await expect_429(launched, 60)
    # ... but requests without a credential go on as before.
    assert (await env.client.get("/healthz")).status == 200
    r = await env.client.get("/api/me")
    assert r.status == 401
    metrics = await (await env.client.get("/metrics")).text()
    assert value(metrics, "broker_edge_refusals_total", reason="ip_auth_failures") == 3


async def test_addresses_behind_a_trusted_proxy_are_counted_apart(
    make_env, token: Callable[..., str]
) -> None:
    env: Env = await make_env(
        env={
            "BROKER_SERVER_TRUSTED_PROXIES": "127.0.0.0/8",
            **limits(ip_auth_failure_burst=2, ip_auth_failures_per_minute=1),
        }
    )

    def from_(ip: str, credential: str) -> dict[str, str]:
        return {"X-Forwarded-For": ip, **auth(credential)}

    for _ in range(2):
        assert (await env.client.get("/api/me", headers=from_("192.0.2.7", "x"))).status == 401
    await expect_429(await env.client.get("/api/me", headers=from_("192.0.2.7", "x")), 60)
    r = await env.client.get("/api/me", headers=from_("192.0.2.8", token("alice")))
    assert r.status == 200


async def test_ipv6_clients_are_counted_by_their_64(make_env, token: Callable[..., str]) -> None:
    """One host holds a whole /64: new addresses from it get no new budget."""
    env: Env = await make_env(
        env={
            "BROKER_SERVER_TRUSTED_PROXIES": "127.0.0.0/8",
            **limits(ip_auth_failure_burst=2, ip_auth_failures_per_minute=1),
        }
    )

    def from_(ip: str, credential: str) -> dict[str, str]:
        return {"X-Forwarded-For": ip, **auth(credential)}

    for host in ("2001:db8:7:1::1", "2001:db8:7:1:ffff:ffff:ffff:fffe"):
        assert (await env.client.get("/api/me", headers=from_(host, "x"))).status == 401
    # A third address of that /64, however it is written: over the budget.
    for host in ("2001:db8:7:1:1234:5678:9abc:def0", "2001:DB8:7:1:0:0:0:42"):
        await expect_429(await env.client.get("/api/me", headers=from_(host, "x")), 60)
    # The next /64 is someone else; IPv4-mapped and plain IPv4 are one address.
    r = await env.client.get("/api/me", headers=from_("2001:db8:7:2::1", token("alice")))
    assert r.status == 200
    for host in ("::ffff:192.0.2.9", "192.0.2.9"):
        assert (await env.client.get("/api/me", headers=from_(host, "x"))).status == 401
    await expect_429(await env.client.get("/api/me", headers=from_("192.0.2.9", "x")), 60)


async def test_failures_naming_one_user(make_env, token: Callable[..., str]) -> None:
    """Forged tokens naming bob: past the user's budget the 401s become 429s,
    but bob's real token keeps working (nobody can lock him out)."""
    env: Env = await make_env(
        env={
            "BROKER_SERVER_TRUSTED_PROXIES": "127.0.0.0/8",
            **limits(user_auth_failure_burst=2, user_auth_failures_per_minute=1),
        }
    )
    for i in range(2):
        headers = {"X-Forwarded-For": f"198.51.100.{i}", **auth(BAD)}
        assert (await env.client.get("/api/me", headers=headers)).status == 401
    headers = {"X-Forwarded-For": "198.51.100.9", **auth(BAD)}
    await expect_429(await env.client.get("/api/me", headers=headers), 60)
    assert (await env.client.get("/api/me", headers=auth(token("bob")))).status == 200
    assert (await env.client.get("/api/me", headers=auth(token("carol")))).status == 200


async def test_refused_viewer_credentials_count_and_the_tunnel_says_too_many(
    make_env, token: Callable[..., str]
) -> None:
    env: Env = await make_env(env=limits(ip_auth_failure_burst=2, ip_auth_failures_per_minute=1))
    launched = await env.launch(token("alice"), "ws-shared")
    sid = launched["session_id"]

    async def tunnel(credential: str) -> tuple[int, str, list[str]]:
        ws = await env.client.ws_connect(env.tunnel(sid, credential), protocols=("guacamole",))
        frames = []
        async for msg in ws:
            frames.append(msg.data)
        return ws.close_code or 0, "", frames

    assert (await tunnel("guessed-1"))[0] == 1008  # 769: not valid
    assert (await env.client.get(f"/viewer/{sid}/info", headers=auth("guessed-2"))).status == 401
    # Now even the right token gets CLIENT_TOO_MANY (797), which the viewer shows.
    ws = await env.client.ws_connect(
        env.tunnel(sid, launched["viewer_token"]), protocols=("guacamole",)
    )
    msg = await ws.receive(timeout=10)
    assert msg.type == aiohttp.WSMsgType.TEXT and msg.data.startswith("5.error,")
    assert msg.data.endswith(",3.797;")
    close = await ws.receive(timeout=10)
    assert (close.type, close.data, close.extra) == (aiohttp.WSMsgType.CLOSE, 1008, "797")
    assert env.guacd.connections == 0


async def test_launches_per_user(make_env, token: Callable[..., str]) -> None:
    env: Env = await make_env(env=limits(user_launch_burst=2, user_launches_per_minute=1))
    alice = token("alice", roles=["finance"])
    assert (await env.api.launch("ws-shared", alice)).status == 201
    assert (await env.api.launch("ws-shared", alice)).status == 200  # her running session
    r = await env.api.launch("ws-finance", alice)
    assert r.status == 429 and r.body["code"] == "too_many_requests"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    # A forged token naming alice is not told about her budget: it is a 401.
    forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
    assert (
        await env.client.post("/api/workspaces/ws-finance/launch", headers=auth(forged))
    ).status == 401
    # Others launch as before; refused launches did not count.
    assert (await env.api.launch("ws-wiki-b", token("bob"))).status == 201
    sessions = await env.api.get("/api/sessions", alice)
    assert [s["workspace_id"] for s in sessions.body] == ["ws-shared"]


async def test_launches_per_address(make_env, token: Callable[..., str]) -> None:
    env: Env = await make_env(env=limits(ip_launch_burst=2, ip_launches_per_minute=1))
    assert (await env.api.launch("ws-shared", token("alice"))).status == 201
    assert (await env.api.launch("ws-wiki-a", token("bob"))).status == 201
    r = await env.api.launch("ws-wiki-b", token("carol"))
    assert r.status == 429 and r.headers["Retry-After"]


async def test_disabled_limits_never_refuse(make_env, token: Callable[..., str]) -> None:
    env: Env = await make_env(
        env={"BROKER_RATELIMIT_ENABLED": "false", **limits(ip_auth_failure_burst=1)}
    )
    for _ in range(5):
        assert (await env.client.get("/api/me", headers=auth("nope"))).status == 401
    assert (await env.client.get("/api/me", headers=auth(token("alice")))).status == 200


async def test_html5_sign_in_failures_count_but_the_apps_own_401s_do_not(
    make_env, token: Callable[..., str]
) -> None:
    env: Env = await make_env(env=limits(ip_auth_failure_burst=2, ip_auth_failures_per_minute=1))
    launched = await env.launch(token("alice"), "ws-wiki-a")
    sid = launched["session_id"]
    stranger = env.new_browser()
    for _ in range(5):  # requests without the app cookie: 401s of the proxy, not sign-ins
        async with stranger.get(env.origin(sid) + "/") as r:
            assert r.status == 401
    for guess in ("guess-1", "guess-2"):
        assert (await env.sign_in(env.new_browser(), sid, guess)).status == 401
    refused = await env.sign_in(env.new_browser(), sid, launched["viewer_token"])
    await expect_429(refused, 60)
