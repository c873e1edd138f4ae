"""The routes timed, and how: one request at a time over a kept-alive
connection, each route's p50 and p99 over ``requests`` requests after a short
warm-up. The heavy user (5,000 sessions) is the caller of the user routes."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from benchmarks.db.process import WORKSPACE, token
from benchmarks.db.seed import HEAVY_EMAIL, HEAVY_USER

WARMUP = 3


@dataclass(frozen=True)
class Route:
    name: str
    path: str
    admin: bool = False

    @property
    def label(self) -> str:
        """The route as the plans name it (``/api/admin/sessions?user=<email>``)."""
        name = self.name.strip()
        return self.path.split("?")[0] + name if name.startswith("?") else name.removeprefix("GET ")


@dataclass(frozen=True)
class Anchors:
    """Sessions to page back from: deep in the heavy user's history, and deep
    in everyone's (for the admin listing)."""

    user_deep: str
    admin_deep: str


def routes(anchors: Anchors, workspace: str) -> list[Route]:
    """Each route once; their labels are unique (the benchmark keys by them)."""
    return [
        Route("GET /api/sessions", "/api/sessions"),
        Route("GET /api/sessions?before= (deep)", f"/api/sessions?before={anchors.user_deep}"),
        Route("GET /api/sessions/active", "/api/sessions/active"),
        Route("GET /api/admin/sessions", "/api/admin/sessions", True),
        Route("  ?before= (deep)", f"/api/admin/sessions?before={anchors.admin_deep}", admin=True),
        Route("  ?workspace=", f"/api/admin/sessions?workspace={workspace}", True),
        Route("  ?user=<id>", f"/api/admin/sessions?user={HEAVY_USER}", True),
        Route("  ?user=<email>", f"/api/admin/sessions?user={HEAVY_EMAIL}", True),
        Route("  ?status=active", "/api/admin/sessions?status=active", True),
        Route("  ?status=terminated", "/api/admin/sessions?status=terminated", True),
        Route("GET /api/audit", "/api/audit"),
        Route("GET /api/admin/audit", "/api/admin/audit", True),
        Route("  ?user=<id>", f"/api/admin/audit?user={HEAVY_USER}", True),
        Route("GET /metrics", "/metrics"),
    ]


class Client:
    """Requests as the heavy user or an admin; any answer but the expected
    status stops the benchmark (a number measured on an error is worthless)."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self._http = http
        self._base = base
        self._user = {"Authorization": f"Bearer {token(HEAVY_USER)}"}
        self._admin = {"Authorization": f"Bearer {token('bench-admin', admin=True)}"}

    async def call(self, method: str, path: str, *, admin: bool = False, want: int = 200) -> Any:
        headers = self._admin if admin else self._user
        async with self._http.request(method, self._base + path, headers=headers) as r:
            body = await r.read()
            if r.status != want:
                raise RuntimeError(f"{method} {path}: {r.status} {body[:300]!r}")
        return body

    async def timed(self, route: Route, requests: int) -> list[float]:
        for _ in range(WARMUP):
            await self.call("GET", route.path, admin=route.admin)
        out = []
        for _ in range(requests):
            started = time.perf_counter()
            await self.call("GET", route.path, admin=route.admin)
            out.append((time.perf_counter() - started) * 1000)
        return out

    async def launches(self, requests: int) -> tuple[list[float], list[float]]:
        """Launch the bench workspace and disconnect it, ``requests`` times:
        (launch ms, disconnect ms)."""
        launch, end = [], []
        for _ in range(requests):
            started = time.perf_counter()
            body = await self.call("POST", f"/api/workspaces/{WORKSPACE}/launch", want=201)
            launch.append((time.perf_counter() - started) * 1000)
            session = json.loads(body)["session_id"]
            started = time.perf_counter()
            await self.call("POST", f"/api/sessions/{session}/disconnect")
            end.append((time.perf_counter() - started) * 1000)
        return launch, end


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (1-99), interpolated between the nearest two."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]
