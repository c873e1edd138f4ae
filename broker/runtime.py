"""The running broker's parts, built once by ``create_app`` and shared by the handlers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from broker.auth import Authenticator
from broker.config import Settings
from broker.db import DbSession
from broker.events import EventBus
from broker.metrics import Metrics
from broker.sessions import SessionService
from broker.viewers import ViewerRegistry
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
