"""Fidelity of the simulated NetBird: statuses, shapes and quirks of the real server."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.tunnels.conftest import ADMIN, NETWORK_ADMIN, USER
from tunnels.simulated.seed import Seed
from tunnels.simulated.server import SimulatedNetBird
from tunnels.simulated.spec import check_response, load_spec

XID = re.compile(r"[0-9a-v]{20}")


class Api:
    """Raw HTTP calls to the simulator, as any client would make them."""

    def __init__(self, session: aiohttp.ClientSession, sim: SimulatedNetBird) -> None:
        self.session = session
        self.sim = sim

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = NETWORK_ADMIN,
        scheme: str = "Token",
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"{scheme} {token}"} if token else {}
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self.session.request(
            method, self.sim.url + path, data=data, headers=headers
        ) as resp:
            assert XID.fullmatch(resp.headers["X-Request-Id"])
            text = await resp.text()
            payload = json.loads(text) if text else None
            query = dict(resp.url.query)
            path = resp.url.path
            verdict = check_response(
                load_spec(), method, path, resp.status, text.encode(), query=query
            )
            assert verdict.ok, verdict.errors  # every answer matches the (patched) spec
            return resp.status, payload


@pytest.fixture
async def api(seed: Seed) -> AsyncIterator[Api]:
    async with SimulatedNetBird(seed) as sim, aiohttp.ClientSession() as session:
        yield Api(session, sim)


def rule(**changes: Any) -> dict[str, Any]:
    base = {
        "name": "r",
        "enabled": True,
        "action": "accept",
        "bidirectional": False,
        "protocol": "tcp",
        "ports": ["22"],
        "sources": [],
    }
    return {**base, **changes}


def policy(**changes: Any) -> dict[str, Any]:
    return {"name": "p", "enabled": True, "rules": [rule()], **changes}


async def test_create_answers_200_and_delete_answers_an_empty_object(api: Api) -> None:
    status, created = await api.call("POST", "/api/policies", policy())
    assert status == 200
    assert XID.fullmatch(created["id"])

    assert await api.call("DELETE", f"/api/policies/{created['id']}") == (200, {})
    assert (await api.call("DELETE", f"/api/policies/{created['id']}"))[0] == 404


async def test_empty_lists_are_null(api: Api) -> None:
    _, group = await api.call("POST", "/api/groups", {"name": "empty"})
    _, made = await api.call("POST", "/api/policies", policy())

    assert group["peers"] is None and group["resources"] is None
    assert made["source_posture_checks"] is None
    assert made["rules"][0]["sources"] is None and made["rules"][0]["destinations"] is None


async def test_unknown_group_ids_are_dropped_silently(api: Api) -> None:
    gateways = api.sim.group_id("gateways")
    body = policy(rules=[rule(sources=["ch8i4ug6lnn4g9hqv7m0", gateways])])

    status, made = await api.call("POST", "/api/policies", body)

    assert status == 200
    assert [g["id"] for g in made["rules"][0]["sources"]] == [gateways]


async def test_missing_required_field_is_422(api: Api) -> None:
    body = policy(rules=[{k: v for k, v in rule().items() if k != "enabled"}])

    status, error = await api.call("POST", "/api/policies", body)

    assert status == 422
    assert error["code"] == 422
    assert "'enabled' is a required property" in error["message"]
    assert api.sim.policies() == []
    assert not api.sim.requests[-1].valid


async def test_omitted_booleans_read_as_false_when_lenient(seed: Seed) -> None:
    async with SimulatedNetBird(seed, strict=False) as sim, aiohttp.ClientSession() as session:
        body = policy(rules=[{k: v for k, v in rule().items() if k != "enabled"}])
        status, made = await Api(session, sim).call("POST", "/api/policies", body)

    assert status == 200
    assert made["rules"][0]["enabled"] is False
    assert not sim.requests[-1].valid  # still recorded as off-spec


async def test_bad_json_is_400(api: Api) -> None:
    assert await api.call("POST", "/api/policies", raw=b'{"name": ') == (
        400,
        {"message": "couldn't parse JSON request", "code": 400},
    )


async def test_wrong_json_type_is_400(api: Api) -> None:
    status, _ = await api.call("POST", "/api/policies", policy(rules=[rule(ports=[22])]))

    assert status == 400


async def test_unknown_or_missing_token_is_401(api: Api) -> None:
    assert (await api.call("GET", "/api/policies", token="nbp_" + "z" * 36))[0] == 401
    assert (await api.call("GET", "/api/policies", token=None))[0] == 401


async def test_bearer_pat_is_accepted(api: Api) -> None:
    assert (await api.call("GET", "/api/users/current", scheme="Bearer"))[0] == 200


async def test_user_role_may_read_but_not_write(api: Api) -> None:
    assert (await api.call("GET", "/api/policies", token=USER))[0] == 200
    status, error = await api.call("POST", "/api/policies", policy(), token=USER)

    assert status == 403
    assert error["code"] == 403


async def test_setup_keys_need_admin(api: Api) -> None:
    key = {"name": "k", "type": "one-off", "expires_in": 60, "auto_groups": [], "usage_limit": 1}

    assert (await api.call("POST", "/api/setup-keys", key))[0] == 403
    status, created = await api.call("POST", "/api/setup-keys", key, token=ADMIN)

    assert status == 200
    assert re.fullmatch(r"[0-9A-F-]{36}", created["key"])
    _, listed = await api.call("GET", "/api/setup-keys")
    assert listed[0]["key"] == created["key"][:5] + "****"


async def test_duplicate_group_name_is_409(api: Api) -> None:
    status, error = await api.call("POST", "/api/groups", {"name": "gateways"})

    assert status == 409
    assert "already exists" in error["message"]


async def test_deleting_a_group_a_policy_uses_is_400(api: Api) -> None:
    _, group = await api.call("POST", "/api/groups", {"name": "ops"})
    await api.call("POST", "/api/policies", policy(rules=[rule(sources=[group["id"]])]))

    status, error = await api.call("DELETE", f"/api/groups/{group['id']}")

    assert status == 400
    assert "policy" in error["message"]
    assert api.sim.group_id("ops") == group["id"]


async def test_group_put_replaces_peers(api: Api) -> None:
    gateway = api.sim.peer_id("gateway-1")
    group_id = api.sim.group_id("gateways")

    _, updated = await api.call("PUT", f"/api/groups/{group_id}", {"name": "gateways"})

    assert updated["peers"] is None
    assert gateway not in api.sim.account.groups[group_id].peers


async def test_group_name_filter_is_exact_and_404s(api: Api) -> None:
    _, found = await api.call("GET", "/api/groups?name=gateways")
    status, _ = await api.call("GET", "/api/groups?name=gateway")

    assert [g["name"] for g in found] == ["gateways"]
    assert status == 404


async def test_peer_name_filter_is_a_substring_match(api: Api) -> None:
    _, peers = await api.call("GET", "/api/peers?name=ws-linux")

    assert sorted(p["name"] for p in peers) == ["ws-linux", "ws-linux-2"]
    assert all(p["ip"].startswith("127.64.0.") for p in peers)


async def test_unknown_peer_is_404(api: Api) -> None:
    status, error = await api.call("GET", "/api/peers/ch8i4ug6lnn4g9hqv7m0")

    assert (status, error["code"]) == (404, 404)


async def test_every_request_is_recorded_without_the_token(api: Api) -> None:
    await api.call("POST", "/api/groups", {"name": "recorded"})

    [recorded] = api.sim.requests
    assert (recorded.method, recorded.path, recorded.body, recorded.status) == (
        "POST",
        "/api/groups",
        {"name": "recorded"},
        200,
    )
    assert recorded.valid
    assert NETWORK_ADMIN not in repr(recorded)


async def test_wait_until_wakes_on_the_write_that_changes_the_account(api: Api) -> None:
    sim = api.sim
    waiting = asyncio.create_task(
        sim.wait_until(lambda: "p" in [p["name"] for p in sim.policies()])
    )
    status, _ = await api.call("POST", "/api/policies", policy(), token=USER)
    assert status == 403 and sim.changes == 0  # refused: nothing changed
    status, _ = await api.call("POST", "/api/policies", policy())
    assert status == 200
    async with asyncio.timeout(5):
        await waiting
    assert sim.changes == 1
