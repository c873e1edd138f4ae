"""``create_app``: the aiohttp application and the lifetime of everything it owns.

Each resource is set up in a cleanup context, so teardown runs only for what
was set up, in reverse order. Dependencies can be injected (tests pass their
own tunnel provider); what the app creates itself, it closes.

Every middleware is in the one ordered list of `create_app`, and so is the
one shutdown hook (`_end_streams`): every open stream, guacd viewer or HTML5
proxy, ends there.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

from aiohttp import web
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.config import ConfigError, GuacdSettings, Settings
from broker.core.auth import Authenticator
from broker.core.background import Periodic
from broker.core.credentials import Credentials
from broker.core.db import DbSession, analyze, create_engine, migrate, session_factory
from broker.core.events import EventBus
from broker.core.models import Workspace, utcnow
from broker.core.pgevents import PgEventBus
from broker.core.ratebuckets import RateStore
from broker.core.reaper import end_due, sweep_streams
from broker.core.reconciler import reconcile_once
from broker.core.retention import Pruner
from broker.core.runtime import Broker
from broker.core.sessions import SessionService
from broker.core.streams import DRAINING
from broker.core.turns import Turns
from broker.core.workspaces import check_workspaces
from broker.web import api, apps, health, redact, viewer
from broker.web.apps import app_origin_middleware
from broker.web.guard import ORIGINS, RATE_LIMITS, guard_middleware
from broker.web.http import (
    BROKER,
    METRICS,
    cors_middleware,
    errors_middleware,
    metrics_middleware,
    security_headers,
    unexpected_middleware,
)
from broker.web.metrics import SAMPLE_SECONDS, Metrics
from broker.web.origins import OriginPolicy
from broker.web.ratelimit import RateLimits
from protocols.guacd import GuacdEndpoint, GuacdTimeouts
from protocols.guacd_pool import GuacdPool
from tunnels.base import TunnelProvider
from tunnels.direct import DirectProvider
from tunnels.netbird.provider import NetBirdProvider

log = logging.getLogger(__name__)

ProviderFactory = Callable[[Settings], TunnelProvider]

# How often SQLite's planner statistics are refreshed (`broker.core.db.analyze`).
ANALYZE_SECONDS = 3600.0


def create_app(
    settings: Settings,
    *,
    tunnels: TunnelProvider | None = None,
    provider_factory: ProviderFactory | None = None,
    metrics: Metrics | None = None,
) -> web.Application:
    """The broker as an aiohttp app. ``tunnels`` (owned by the caller) or
    ``provider_factory`` replace the provider the settings name; ``metrics``
    is given by a worker of ``broker serve --workers`` (shared with the
    other workers), else the app keeps its own."""
    app = web.Application(
        # In this order, outermost first.
        middlewares=[
            # Every request, app origins included: header size, WebSocket
            # Origin, rate limits (`broker.web.guard`).
            guard_middleware,
            # App origins are answered by the HTML5 proxy and go no further.
            app_origin_middleware,
            cors_middleware(settings.server.cors_origins),
            metrics_middleware,
            errors_middleware,
            unexpected_middleware,
        ],
        client_max_size=settings.server.max_body_bytes,
        # A header line must hold the largest accepted bearer token, so the
        # token check (not the HTTP parser) decides about long tokens.
        handler_args={"max_field_size": max(8190, 2 * settings.auth.max_token_bytes + 64)},
    )
    metrics = metrics or Metrics()
    app[METRICS] = metrics
    app[RATE_LIMITS] = RateLimits(settings.ratelimit)
    app[ORIGINS] = OriginPolicy.from_settings(settings)
    redact.install()  # the log redaction filter on aiohttp's loggers
    app.router.add_routes(api.routes())
    app.router.add_routes(health.routes())
    app.router.add_routes(viewer.routes())
    app.on_response_prepare.append(security_headers)
    app.on_shutdown.append(_end_streams)
    app.cleanup_ctx.append(_lifetime(settings, metrics, tunnels, provider_factory))
    app.cleanup_ctx.append(apps.lifetime)  # needs the broker: after its context
    return app


def default_provider(settings: Settings) -> TunnelProvider:
    """The provider ``tunnel.provider`` names. Raises `ConfigError` for the
    netbird provider without its settings (the demo fills them in)."""
    if settings.tunnel.provider == "direct":
        return DirectProvider()
    if settings.netbird is None:
        raise ConfigError('tunnel.provider is "netbird" but [netbird] is not configured')
    return NetBirdProvider(settings.netbird)


def guacd_pool(settings: GuacdSettings) -> GuacdPool:
    """The pool of the configured guacd daemons (health-checked unless
    ``health_check_seconds`` is 0); with ``tls``, each connection is verified
    against ``tls_ca_file`` (or the system store). Reads the CA file now:
    `OSError`/`ssl.SSLError` if unusable."""
    context: ssl.SSLContext | None = None
    if settings.tls:
        context = ssl.create_default_context(cafile=settings.tls_ca_file or None)
    endpoints = [GuacdEndpoint(e.host, e.port, tls=context) for e in settings.endpoints]
    reply = settings.reply_timeout_seconds
    timeouts = GuacdTimeouts(connect=settings.connect_timeout_seconds, write=reply, reply=reply)
    return GuacdPool(endpoints, timeouts=timeouts, recheck=settings.health_check_seconds > 0)


def _lifetime(
    configured: Settings,
    metrics: Metrics,
    injected: TunnelProvider | None,
    factory: ProviderFactory | None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            settings = configured
            if settings.demo.enabled and injected is None and factory is None:
                from broker.demo import demo_environment  # only the demo loads simulators

                settings = await stack.enter_async_context(demo_environment(settings))
            check_workspaces(settings.workspaces)
            broker = await _build(stack, settings, metrics, injected, factory)
            app[BROKER] = broker
            limits = app[RATE_LIMITS]
            if settings.server.workers > 1 and not settings.is_sqlite:
                # One budget for the host, whichever worker a request reaches.
                limits.share(RateStore(broker.engine))
            _start_background(stack, broker, metrics, limits.store)
            yield

    return lifetime


async def _build(
    stack: AsyncExitStack,
    settings: Settings,
    metrics: Metrics,
    injected: TunnelProvider | None,
    factory: ProviderFactory | None,
) -> Broker:
    engine = create_engine(
        settings.database_url,
        busy_timeout_ms=settings.database.busy_timeout_ms,
        pool_size=settings.database.pool_size,
        max_overflow=settings.database.max_overflow,
        statement_timeout=settings.database.statement_timeout_seconds,
        echo=settings.database.echo,
    )
    stack.push_async_callback(engine.dispose)
    if settings.is_sqlite or settings.database.auto_migrate:
        await migrate(engine)
    db = session_factory(engine)
    await seed_workspaces(db, settings)
    if injected is not None:
        tunnels = injected
    else:
        tunnels = (factory or default_provider)(settings)
        stack.push_async_callback(tunnels.aclose)
    auth = Authenticator(settings.auth)
    stack.push_async_callback(auth.aclose)
    events = _event_bus(settings, engine)
    if isinstance(events, PgEventBus):
        events.start()
        stack.push_async_callback(events.aclose)
    guacd = guacd_pool(settings.guacd)
    if guacd.checks:
        await guacd.check_all()  # serve knowing which guacd is up
    sessions = SessionService(
        db,
        settings,
        tunnels,
        events,
        on_launch=lambda outcome: metrics.launches.labels(outcome=outcome).inc(),
        guacd_available=guacd.available,
    )
    stack.push_async_callback(sessions.aclose)
    credentials = Credentials(db, auth, settings)
    broker = Broker(
        settings,
        engine,
        db,
        tunnels,
        events,
        sessions,
        auth,
        guacd=guacd,
        queries=sessions.queries,
        credentials=credentials,
    )
    # The one subscription that closes a session's streams, whatever their kind.
    events.subscribe(broker.streams.on_session_ended)
    return broker


def _event_bus(settings: Settings, engine: AsyncEngine) -> EventBus:
    """In-process on SQLite (one broker); across replicas on PostgreSQL."""
    if engine.dialect.name == "postgresql":
        return PgEventBus(engine)
    return EventBus()


def _start_background(
    stack: AsyncExitStack, broker: Broker, metrics: Metrics, limits: RateStore | None
) -> None:
    """The periodic jobs. What acts on the shared database runs in one process
    per pass (`broker.core.turns`: every worker of ``--workers`` and every
    replica starts its loop; one of them takes each turn). What keeps this
    process's own state runs in every process: the sweep of its open streams,
    its guacd pool's health checks (each worker's pool routes its own
    connects by what it saw), and its metrics sample."""
    tunnel = broker.settings.tunnel
    turns = Turns(broker.engine)
    revokes = Periodic(
        "revoke-retry",
        tunnel.revoke_retry_seconds,
        turns.once("revoke-retry", broker.sessions.retry_revokes),
    )

    async def reconcile_pass() -> None:
        await reconcile_once(
            broker.sessions, broker.tunnels, launch_timeout=tunnel.launch_timeout_seconds
        )

    reconciler = Periodic(
        "tunnel-reconciler",
        tunnel.reconcile_interval_seconds,
        turns.once("tunnel-reconciler", reconcile_pass),
    )

    async def reap_pass() -> None:
        # The sweep of this process's open streams (`broker.core.reaper.sweep_streams`)
        # every pass; ending due sessions in one process per pass.
        now = utcnow()
        await sweep_streams(broker.sessions, broker.streams, now)
        async with turns.take("reaper") as mine:
            if mine:
                await end_due(broker.sessions, broker.settings, now)

    reaper = Periodic("reaper", broker.settings.limits.reaper_interval_seconds, reap_pass)
    if isinstance(broker.events, PgEventBus):
        # Events published while this replica was not listening are lost: its
        # sweep closes those sessions' streams now, not an interval later.
        broker.events.on_resumed(reaper.wake)
    retention = broker.settings.retention
    # The pruner takes its own turn (`broker.core.retention`).
    pruner = Pruner(broker.engine, broker.db, retention)
    # The first run waits up to a minute: a start (migrations, seeding, the
    # first launches) is no time for bulk deletes.
    pruning = Periodic(
        "retention",
        retention.interval_seconds,
        pruner.run_once,
        first_delay=min(60.0, retention.interval_seconds),
    )
    loops = [revokes, reconciler, reaper, pruning]
    guacd, every = broker.guacd, broker.settings.guacd.health_check_seconds
    if guacd is not None and guacd.checks:
        loops.append(Periodic("guacd-health", every, guacd.check_all))
    if broker.settings.is_sqlite:
        # At start (just after the migrations), then hourly as the tables grow.
        loops.append(Periodic("sqlite-analyze", ANALYZE_SECONDS, lambda: analyze(broker.engine)))
    if limits is not None:
        loops.append(Periodic("ratelimit-prune", 60.0, turns.once("ratelimit-prune", limits.prune)))
    if metrics.multiprocess_dir is not None:

        async def sample() -> None:
            pool = broker.guacd
            metrics.sample(pool.states() if pool is not None else (), broker.events.state())

        loops.append(Periodic("metrics-sample", SAMPLE_SECONDS, sample))
    for loop in loops:
        loop.start()
        stack.push_async_callback(loop.aclose)


async def seed_workspaces(db: Callable[[], DbSession], settings: Settings) -> None:
    """Make the workspaces table match the config: upsert each configured
    workspace, disable the ones no longer configured (their sessions stay)."""
    now = utcnow()
    async with db() as s, s.begin():
        existing = {w.id: w for w in (await s.scalars(select(Workspace))).all()}
        for ws in settings.workspaces:
            row = existing.get(ws.id)
            if row is None:
                s.add(
                    Workspace(
                        id=ws.id,
                        name=ws.name,
                        type=ws.type,
                        protocol=ws.protocol,
                        description=ws.description,
                        enabled=True,
                        updated_at=now,
                    )
                )
            else:
                row.name, row.type, row.protocol = ws.name, ws.type, ws.protocol
                row.description, row.enabled, row.updated_at = ws.description, True, now
        configured = [w.id for w in settings.workspaces]
        await s.execute(
            update(Workspace).where(Workspace.id.not_in(configured)).values(enabled=False)
        )


async def _end_streams(app: web.Application) -> None:
    """On shutdown, every open stream ends with DRAINING: guacd viewers are told
    SERVER_BUSY so they reconnect elsewhere, proxied WebSockets close with 1001;
    their sessions stay active."""
    broker = app.get(BROKER)
    if broker is not None:
        broker.draining = True
        broker.streams.end_all(DRAINING)
