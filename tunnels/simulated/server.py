"""Simulated NetBird Management API: a real HTTP server on loopback for tests and the demo.

It serves the calls the broker makes (policies, peers, groups, setup keys,
``users/current``) with NetBird's behaviours (see `tunnels.simulated.account`),
checks ``Authorization: Token <PAT>`` (or ``Bearer <PAT>``) and the token's
role, validates every request against NetBird's OpenAPI spec
(`tunnels.simulated.spec`), records every request in `requests`, answers
with an ``X-Request-Id`` header, and injects failures (`inject`). Tests await
the account's state with `wait_until` instead of polling it.

In process::

    sim = SimulatedNetBird(Seed(workspaces=(SeedPeer("ws-1", "127.64.0.10"),)))
    await sim.start(host="127.0.0.1", port=0)
    settings = NetBirdSettings(base_url=sim.url, token=sim.token)
    ...
    await sim.aclose()

Standalone: ``python -m tunnels.simulated.server --host 127.0.0.1 --port 0
[--seed FILE] [--lenient]`` prints ``{"url": ...}`` and serves until
interrupted. Order of checks on a request: 401 (token), 400 (JSON that does
not parse or has wrong types), 403 (role), 422 (spec, when ``strict``),
then NetBird's own rules (404, 409, 422, 400).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import random
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from tunnels.simulated.account import Account, ApiError, Json
from tunnels.simulated.faults import Fault, FaultKind, FaultPlan
from tunnels.simulated.routes import BODY, TOKEN, add_routes, error_response
from tunnels.simulated.seed import ADMIN_ROLES, WRITE_ROLES, Seed, demo_seed
from tunnels.simulated.spec import SPEC_PATH, Verdict, check_request, load_spec

log = logging.getLogger("tunnels.simulated.server")

_WRITES = frozenset({"POST", "PUT", "DELETE"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as received: ``body`` is the decoded JSON (``None`` when
    empty or not JSON), ``errors`` what the spec found wrong (empty: valid),
    ``status`` the answer (``None``: none was sent, or not yet)."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    body: Any = None
    errors: tuple[str, ...] = ()
    status: int | None = None

    @property
    def valid(self) -> bool:
        return not self.errors


class SimulatedNetBird:
    """One simulated NetBird account behind one HTTP server.

    ``strict`` answers 422 to any request the spec refuses; without it, the
    simulator only refuses what a real server would (wrong JSON types,
    missing names...) and reads omitted booleans as false, as NetBird does.
    Every request is recorded and validated either way.
    """

    def __init__(
        self, seed: Seed | None = None, *, strict: bool = True, spec_path: Path = SPEC_PATH
    ) -> None:
        self.seed = seed or Seed()
        self.strict = strict
        rng = random.Random(self.seed.rng_seed)
        self.account = Account(self.seed, rng)
        self.faults = FaultPlan(rng)
        self.requests: list[RecordedRequest] = []
        self._spec = load_spec(spec_path)
        self._closing = asyncio.Event()
        self._arrived = asyncio.Condition()
        self._changed = asyncio.Condition()
        self.changes = 0
        self._runner: web.AppRunner | None = None
        self._url = ""

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``, once started."""
        if not self._url:
            raise RuntimeError("the simulated NetBird is not started")
        return self._url

    @property
    def token(self) -> str:
        """The seed's first token (an admin's by default)."""
        return self.seed.tokens[0].token

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (loopback only; port 0 picks one); returns `url`."""
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            raise ValueError("the simulated NetBird only listens on loopback")
        if self._runner is not None:
            raise RuntimeError("the simulated NetBird is already started")
        runner = web.AppRunner(self.create_app(), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        self._url = f"http://{bound_host}:{bound_port}"
        log.info("simulated NetBird listening on %s", self._url)
        return self._url

    async def aclose(self) -> None:
        """Stop serving; hanging requests end without an answer."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SimulatedNetBird:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def inject(
        self,
        kind: FaultKind | str,
        *,
        times: int | None = 1,
        rate: float = 1.0,
        method: str | None = None,
        path: str | None = None,
        delay: float = 0.0,
        status: int = 500,
    ) -> Fault:
        """Arm a failure (see `tunnels.simulated.faults`); returns it to watch ``hits``."""
        fault = Fault(FaultKind(kind), times, rate, method, path, delay, status)
        return self.faults.add(fault)

    def policies(self) -> list[Json]:
        """Every policy, as ``GET /api/policies`` answers."""
        return [self.account.policy_json(p) for p in self.account.policies.values()]

    def peer_id(self, name: str) -> str:
        return next(p.id for p in self.account.peers.values() if p.name == name)

    def group_id(self, name: str) -> str:
        group = self.account.group_named(name)
        if group is None:
            raise KeyError(name)
        return group.id

    def invalid_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if not r.valid]

    async def wait_for_request(
        self, predicate: Callable[[RecordedRequest], bool]
    ) -> RecordedRequest:
        """The first recorded request matching ``predicate``, waiting for it to
        arrive. Waits forever: bound it with `asyncio.timeout`."""

        def found() -> RecordedRequest | None:
            return next((r for r in self.requests if predicate(r)), None)

        async with self._arrived:
            await self._arrived.wait_for(lambda: found() is not None)
        match = found()
        assert match is not None
        return match

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` (about the account: policies, groups,
        peers, setup keys) holds. It is checked now and again after every
        change: each write request (POST, PUT, DELETE) the account accepted.
        Edits made directly on `account` wake nobody. Waits forever: bound it
        with `asyncio.timeout`."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    def create_app(self) -> web.Application:
        app = web.Application(middlewares=[self._pipeline])
        add_routes(app, self.account)
        return app

    @web.middleware
    async def _pipeline(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = self.account.new_id()
        raw = await request.read()
        body, parsed = _decode(raw)
        verdict = check_request(
            self._spec,
            request.method,
            request.path,
            query=request.query,
            headers=request.headers,
            body=raw if request.method in _WRITES and raw else None,
        )
        index = len(self.requests)
        self.requests.append(
            RecordedRequest(request.method, request.path, dict(request.query), body, verdict.errors)
        )
        async with self._arrived:
            self._arrived.notify_all()
        response = await self._faulted(request, handler, body, parsed, verdict)
        if response is not None:
            response.headers["X-Request-Id"] = request_id
        status = response.status if response is not None else None
        self.requests[index] = replace(self.requests[index], status=status)
        log.debug("simulated NetBird %s %s -> %s", request.method, request.path_qs, status)
        return response if response is not None else _drop(request)

    async def _faulted(
        self, request: web.Request, handler: Handler, body: Any, parsed: bool, verdict: Verdict
    ) -> web.StreamResponse | None:
        """The answer to send, after any injected fault; ``None`` to send none."""
        fault = self.faults.take(request.method, request.path)
        kind = fault.kind if fault is not None else None
        if fault is not None and not fault.kind.commits:
            if kind is FaultKind.SLOW:
                await self._pause(fault.delay)
            elif kind is FaultKind.ERROR:
                return error_response(fault.status, "internal server error")
            elif kind is FaultKind.RATE_LIMIT:
                return error_response(429, "too many requests")
            elif kind is FaultKind.HANG:
                await self._closing.wait()
                return None
            elif kind is FaultKind.DROP:
                return None
        response = await self._answer(request, handler, body, parsed, verdict)
        if kind is FaultKind.COMMIT_THEN_ERROR and fault is not None:
            return error_response(fault.status, "internal server error")
        if kind is FaultKind.COMMIT_THEN_HANG:
            await self._closing.wait()
            return None
        return None if kind is FaultKind.COMMIT_THEN_DROP else response

    async def _answer(
        self, request: web.Request, handler: Handler, body: Any, parsed: bool, verdict: Verdict
    ) -> web.StreamResponse:
        try:
            token = self._authenticate(request)
            if request.match_info.http_exception is not None:
                status = request.match_info.http_exception.status
                raise ApiError(status, "not found" if status == 404 else "method not allowed")
            if request.method in ("POST", "PUT") and (not parsed or verdict.wrong_type):
                raise ApiError(400, "couldn't parse JSON request")
            self._authorize(request, token)
            if self.strict and verdict.errors:
                raise ApiError(422, "; ".join(verdict.errors[:5]))
            request[TOKEN] = token
            request[BODY] = body
            response = await handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.message)
        if request.method in _WRITES and response.status < 300:
            async with self._changed:
                self.changes += 1
                self._changed.notify_all()
        return response

    def _authenticate(self, request: web.Request) -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme not in ("Token", "Bearer") or not token:
            raise ApiError(401, "no valid authentication provided")
        if token not in self.account.users:
            raise ApiError(401, "token invalid")
        return token

    def _authorize(self, request: web.Request, token: str) -> None:
        if request.method not in _WRITES:
            return
        needed = ADMIN_ROLES if request.path.startswith("/api/setup-keys") else WRITE_ROLES
        role = self.account.users[token].role
        if role not in needed:
            raise ApiError(403, f"user role {role} has no permission for this operation")

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)


def _decode(raw: bytes) -> tuple[Any, bool]:
    """The JSON in ``raw`` and whether it parsed (an empty body does not)."""
    try:
        return json.loads(raw), True
    except ValueError:
        return None, False


def _drop(request: web.Request) -> web.Response:
    """Close the connection; the response returned is never sent."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=500)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tunnels.simulated.server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=Path, help="JSON or TOML seed (default: the demo's)")
    parser.add_argument("--lenient", action="store_true", help="do not 422 spec violations")
    args = parser.parse_args(argv)
    seed = Seed.from_file(args.seed) if args.seed else demo_seed()
    asyncio.run(_serve(SimulatedNetBird(seed, strict=not args.lenient), args.host, args.port))
    return 0


async def _serve(sim: SimulatedNetBird, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await sim.start(host, port)
    print(json.dumps({"url": sim.url}), flush=True)
    try:
        await stop.wait()
    finally:
        await sim.aclose()


if __name__ == "__main__":
    raise SystemExit(main())
