"""The running broker's parts, built once by ``create_app`` and shared by the handlers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from broker.config import Settings
from broker.core.auth import Authenticator
from broker.core.credentials import Credentials
from broker.core.db import DbSession
from broker.core.events import EventBus
from broker.core.queries import SessionQueries
from broker.core.sessions import SessionService
from broker.core.streams import ViewerRegistry
from broker.web.metrics import Metrics
from protocols.guacd import GuacdClient
from tunnels.base import TunnelProvider

if TYPE_CHECKING:
    from aiohttp.web import Request


@dataclass
class Broker:
    settings: Settings
    engine: AsyncEngine
    db: async_sessionmaker[DbSession]
    tunnels: TunnelProvider
    events: EventBus
    sessions: SessionService
    auth: Authenticator
    metrics: Metrics = field(default_factory=Metrics)
    guacd: GuacdClient | None = None
    viewers: ViewerRegistry = field(default_factory=ViewerRegistry)
    # Set by the HTML5 proxy: the URL a viewer of an html5 session is sent to.
    app_url: Callable[[Request, str], str] | None = None
    draining: bool = False
    queries: SessionQueries = field(kw_only=True)
    credentials: Credentials = field(kw_only=True)
