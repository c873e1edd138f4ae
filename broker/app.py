"""``create_app``: the aiohttp application and the lifetime of everything it owns.

Each resource is set up in a cleanup context, so teardown runs only for what
was set up, in reverse order. Dependencies can be injected (tests pass their
own tunnel provider); what the app creates itself, it closes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

from aiohttp import web
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.config import Settings
from broker.core.auth import Authenticator
from broker.core.background import Periodic
from broker.core.db import DbSession, create_engine, migrate, session_factory
from broker.core.events import EventBus
from broker.core.models import Workspace, utcnow
from broker.core.pgevents import PgEventBus
from broker.core.reaper import reap_once
from broker.core.reconciler import reconcile_once
from broker.core.runtime import Broker
from broker.core.sessions import SessionService
from broker.core.streams import DRAINING
from broker.core.workspaces import check_workspaces
from broker.web import api, apps, guard, health, viewer
from broker.web.http import (
    BROKER,
    cors_middleware,
    errors_middleware,
    metrics_middleware,
    security_headers,
    unexpected_middleware,
)
from broker.web.metrics import Metrics
from tunnels.base import TunnelProvider
from tunnels.direct import DirectProvider
from tunnels.netbird.provider import NetBirdProvider, NetBirdSettings

log = logging.getLogger(__name__)

ProviderFactory = Callable[[Settings], TunnelProvider]


def create_app(
    settings: Settings,
    *,
    tunnels: TunnelProvider | None = None,
    provider_factory: ProviderFactory | None = None,
) -> web.Application:
    """The broker as an aiohttp app. ``tunnels`` (owned by the caller) or
    ``provider_factory`` replace the provider the settings name."""
    app = web.Application(
        middlewares=[
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
    app.router.add_routes(api.routes())
    app.router.add_routes(health.routes())
    app.router.add_routes(viewer.routes())
    app.on_response_prepare.append(security_headers)
    app.on_shutdown.append(_close_viewers)
    app.cleanup_ctx.append(_lifetime(settings, tunnels, provider_factory))
    apps.install(app)
    guard.install(app, settings)
    return app


def default_provider(settings: Settings) -> TunnelProvider:
    """The provider ``tunnel.provider`` names."""
    if settings.tunnel.provider == "direct":
        return DirectProvider()
    nb = settings.netbird
    return NetBirdProvider(
        NetBirdSettings(
            base_url=nb.base_url,
            token=nb.token,
            gateway_group=nb.gateway_group,
            request_timeout=nb.timeout_seconds,
            max_retries=nb.max_retries,
            max_retry_time=nb.max_retry_seconds,
            prefer_dns=nb.prefer_dns,
        )
    )


def _lifetime(
    configured: Settings, injected: TunnelProvider | None, factory: ProviderFactory | None
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            settings = configured
            if settings.demo.enabled and injected is None and factory is None:
                from broker.demo import demo_environment  # only the demo loads simulators

                settings = await stack.enter_async_context(demo_environment(settings))
            check_workspaces(settings.workspaces)
            broker = await _build(stack, settings, injected, factory)
            app[BROKER] = broker
            _start_background(stack, broker)
            yield

    return lifetime


async def _build(
    stack: AsyncExitStack,
    settings: Settings,
    injected: TunnelProvider | None,
    factory: ProviderFactory | None,
) -> Broker:
    engine = create_engine(
        settings.database_url,
        busy_timeout_ms=settings.database.busy_timeout_ms,
        pool_size=settings.database.pool_size,
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
    metrics = Metrics()
    events = _event_bus(settings, engine)
    if isinstance(events, PgEventBus):
        events.start()
        stack.push_async_callback(events.aclose)
    sessions = SessionService(
        db,
        settings,
        tunnels,
        events,
        on_launch=lambda outcome: metrics.launches.inc(outcome=outcome),
        on_end=lambda reason: metrics.session_ends.inc(reason=reason),
    )
    stack.push_async_callback(sessions.aclose)
    guacd = viewer.guacd_client(
        settings.guacd.endpoints,
        tls=settings.guacd.tls,
        ca_file=settings.guacd.tls_ca_file,
        connect_timeout=settings.guacd.connect_timeout_seconds,
        reply_timeout=settings.guacd.reply_timeout_seconds,
    )
    broker = Broker(settings, engine, db, tunnels, events, sessions, auth, metrics, guacd=guacd)
    events.subscribe(broker.viewers.on_session_ended)
    return broker


def _event_bus(settings: Settings, engine: AsyncEngine) -> EventBus:
    """In-process on SQLite (one broker); across replicas on PostgreSQL."""
    if engine.dialect.name == "postgresql":
        return PgEventBus(engine)
    return EventBus()


def _start_background(stack: AsyncExitStack, broker: Broker) -> None:
    tunnel = broker.settings.tunnel
    revokes = Periodic("revoke-retry", tunnel.revoke_retry_seconds, broker.sessions.retry_revokes)

    async def reconcile_pass() -> None:
        await reconcile_once(
            broker.sessions, broker.tunnels, launch_timeout=tunnel.launch_timeout_seconds
        )

    reconciler = Periodic("tunnel-reconciler", tunnel.reconcile_interval_seconds, reconcile_pass)

    async def reap_pass() -> None:
        await reap_once(broker.sessions, broker.settings, broker.viewers)

    reaper = Periodic("reaper", broker.settings.limits.reaper_interval_seconds, reap_pass)
    for loop in (revokes, reconciler, reaper):
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


async def _close_viewers(app: web.Application) -> None:
    """On shutdown, live viewers are told SERVER_BUSY so they reconnect elsewhere;
    their sessions stay active."""
    broker = app.get(BROKER)
    if broker is not None:
        broker.draining = True
        broker.viewers.end_all(DRAINING)
