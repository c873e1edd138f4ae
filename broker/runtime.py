"""The running broker's parts, built once by ``create_app`` and shared by the handlers."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from broker.auth import Authenticator
from broker.config import Settings
from broker.db import DbSession
from broker.events import EventBus
from broker.metrics import Metrics
from broker.sessions import SessionService
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
    metrics: Metrics = field(default_factory=Metrics)
    draining: bool = False
