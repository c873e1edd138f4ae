"""The running broker's parts, built once by ``create_app`` and shared by the handlers."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from broker.config import Settings
from broker.core.auth import Authenticator
from broker.core.credentials import Credentials
from broker.core.db import DbSession
from broker.core.events import EventBus
from broker.core.queries import SessionQueries
from broker.core.sessions import SessionService
from broker.core.streams import OpenStreams
from protocols.guacd_pool import GuacdPool
from tunnels.base import TunnelProvider


@dataclass
class Broker:
    settings: Settings
    engine: AsyncEngine
    db: async_sessionmaker[DbSession]
    tunnels: TunnelProvider
    events: EventBus
    sessions: SessionService
    auth: Authenticator
    guacd: GuacdPool | None = None
    # Every open stream (guacd viewers, HTML5 proxy requests and WebSockets).
    streams: OpenStreams = field(default_factory=OpenStreams)
    draining: bool = False
    queries: SessionQueries = field(kw_only=True)
    credentials: Credentials = field(kw_only=True)
