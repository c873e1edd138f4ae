"""``/healthz`` (alive), ``/readyz`` (dependencies) and ``/metrics`` (Prometheus).

``/readyz`` tells anyone only whether the broker is ready and, by name, which
check is not (``{"status", "checks": {name: {"ok"}}, "detail"}``); what each
check saw (the NetBird service user and its role, group ids, peer and policy
counts...) only an admin's bearer JWT gets. No address is exempt: behind a
reverse proxy on the same host every request comes from loopback. A
presented credential that is not an admin's JWT is a 401/403 like anywhere
in ``/api``.

A check can pass while degraded: ``replica_events`` (PostgreSQL) stays ok
when this replica stops hearing other replicas, and only its detail says
"degraded since ..."; monitoring without an admin token has
``broker_event_bus_listening`` in ``/metrics``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy import text

from broker.core.errors import Forbidden
from broker.core.models import EndReason, SessionStatus
from broker.core.queries import SessionCounts
from broker.core.runtime import Broker
from broker.core.workspaces import uses_guacd
from broker.web.http import broker_of, json_response, metrics_of, principal
from broker.web.metrics import CONTENT_TYPE
from broker.web.serialize import iso
from tunnels.base import Check

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 3.0


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def _bounded(name: str, coro: Awaitable[list[Check]]) -> list[Check]:
    try:
        return await asyncio.wait_for(coro, CHECK_TIMEOUT)
    except TimeoutError:
        return [Check(name, False, f"no answer within {CHECK_TIMEOUT:g} s")]
    except Exception as exc:  # a check must report, never raise
        return [Check(name, False, f"failed: {type(exc).__name__}")]


async def _database(broker: Broker) -> list[Check]:
    async with broker.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return [Check("database", True, "reachable")]


async def _tunnel(broker: Broker) -> list[Check]:
    return list((await broker.tunnels.health()).checks)


def guacd_check(broker: Broker) -> list[Check]:
    """From the pool's background checks (nothing is asked of guacd here):
    failing when remote-desktop workspaces are configured and no guacd is
    healthy. None configured: no check."""
    pool = broker.guacd
    if pool is None or not any(uses_guacd(ws) for ws in broker.settings.workspaces):
        return []
    if not pool.checks:
        return [Check("guacd", True, "not checked (guacd.health_check_seconds = 0)")]
    detail = "; ".join(
        f"{s.endpoint}: "
        + ("healthy" if s.healthy else f"unhealthy ({s.last_error or 'not checked yet'})")
        + f", {s.live} live"
        for s in pool.states()
    )
    return [Check("guacd", pool.healthy(), detail)]


def events_check(broker: Broker) -> list[Check]:
    """Whether this replica hears sessions ended on other replicas (PostgreSQL
    only). Not hearing them is degraded, not unready: every call still works,
    and the reaper's sweep still closes those sessions' streams here, only
    later (up to ``limits.reaper_interval_seconds``)."""
    state = broker.events.state()
    if state is None:
        return []
    lost = f"{state.disconnects} listening connection(s) lost since start"
    if state.down_since is None:
        return [Check("replica_events", True, f"listening; {lost}")]
    every = broker.settings.limits.reaper_interval_seconds
    since = iso(state.down_since)
    return [
        Check(
            "replica_events",
            True,
            f"degraded since {since}: not listening to other replicas; {lost}",
            warning=f"streams of sessions ended elsewhere close at the sweep (every {every:g} s)",
        )
    ]


async def readiness(broker: Broker) -> tuple[bool, dict[str, Any]]:
    results = await asyncio.gather(
        _bounded("database", _database(broker)), _bounded("tunnel", _tunnel(broker))
    )
    checks = [c for group in results for c in group] + guacd_check(broker) + events_check(broker)
    if broker.draining:
        checks.append(Check("draining", False, "shutting down"))
    ok = all(c.ok for c in checks)
    body: dict[str, Any] = {
        "status": "ready" if ok else "not_ready",
        "checks": {
            c.name: {
                "ok": c.ok,
                "detail": c.detail,
                **({"warning": c.warning} if c.warning else {}),
            }
            for c in checks
        },
    }
    failing = [c.name for c in checks if not c.ok]
    if failing:
        body["detail"] = "Not ready: " + ", ".join(failing)
    return ok, body


async def readyz(request: web.Request) -> web.Response:
    detailed = "Authorization" in request.headers
    if detailed and not (await principal(request)).is_admin:
        raise Forbidden("Administrator role required for readiness details")
    ok, body = await readiness(broker_of(request))
    if not detailed:
        body["checks"] = {name: {"ok": check["ok"]} for name, check in body["checks"].items()}
    return json_response(body, 200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    broker = broker_of(request)
    kept = metrics_of(request)
    kept.sample(broker.guacd.states() if broker.guacd is not None else (), broker.events.state())
    try:
        counts = await asyncio.wait_for(broker.queries.counts(), CHECK_TIMEOUT)
    except Exception as exc:  # metrics must render even when the database is down
        log.warning("session counts unavailable: %s", type(exc).__name__)
        counts = None
    up = GaugeMetricFamily("broker_up", "1 while the broker serves.", value=1.0)
    families = [*session_metrics(counts), up] if counts is not None else [up]
    return web.Response(
        text=kept.render(families),
        content_type=CONTENT_TYPE,
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


def session_metrics(counts: SessionCounts) -> list[Metric]:
    """Active sessions now, and sessions ended ever by reason (with the status
    the reason gives): both read from the database, the same from every
    replica and worker, at the same cost however many sessions are kept, and
    added by the answering worker only. Every reason is shown, 0 until it
    happens, so rates work from the first end."""
    active = GaugeMetricFamily("broker_sessions", "Sessions now active.", labels=("status",))
    active.add_metric((str(SessionStatus.ACTIVE),), float(counts.active))
    status_of = {str(reason): str(reason.status) for reason in EndReason}
    ended_by = dict.fromkeys(status_of, 0.0)
    for reason, count in counts.ended.items():
        ended_by[reason] = float(count)
    ended = CounterMetricFamily(
        "broker_sessions_ended",
        "Sessions ended, by reason and the status it gives (all replicas, ever).",
        labels=("reason", "status"),
    )
    for reason, total in sorted(ended_by.items()):
        ended.add_metric((reason, status_of.get(reason, "unknown")), total)
    return [active, ended]


def routes() -> list[web.RouteDef]:
    return [web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics)]
