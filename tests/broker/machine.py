"""The session state machine and the credentials on the test database, built
the way the broker builds them at start, without HTTP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from broker.app import seed_workspaces
from broker.config import Settings, WorkspaceConfig
from broker.core.audit import AuditQuery
from broker.core.audit import query as audit_query
from broker.core.auth import Authenticator, Principal
from broker.core.credentials import Credentials
from broker.core.db import DbSession, create_engine, migrate, session_factory
from broker.core.events import EventBus, SessionEnded
from broker.core.models import AuditEvent, Session
from broker.core.sessions import Launched, SessionService
from tunnels.base import TunnelProvider

WORKSPACES = """
[[workspaces]]
id = "ws-linux"
name = "Linux"
type = "linux"
peer = "ws-linux-peer"

[[workspaces]]
id = "ws-rdp"
name = "Windows"
type = "rdp"
peer = "ws-rdp-peer"

[[workspaces]]
id = "ws-wiki"
name = "Team Wiki"
type = "html5"
port = 8081
"""


def user(name: str) -> Principal:
    return Principal(name, f"{name}@example.com", frozenset(), False, True)


ALICE = user("alice")


@dataclass
class Machine:
    """One broker's sessions and credentials on the test database; ``ended``
    collects the `SessionEnded` events it published."""

    settings: Settings
    engine: AsyncEngine
    db: async_sessionmaker[DbSession]
    sessions: SessionService
    credentials: Credentials
    auth: Authenticator
    ended: list[SessionEnded] = field(default_factory=list)

    def workspace(self, workspace_id: str) -> WorkspaceConfig:
        ws = self.settings.workspace(workspace_id)
        assert ws is not None
        return ws

    async def launch(self, workspace_id: str, who: Principal = ALICE) -> Launched:
        return await self.sessions.launch(who, self.workspace(workspace_id), "192.0.2.7")

    async def row(self, session_id: str) -> Session:
        session = await self.sessions.queries.get(session_id)
        assert session is not None
        return session

    async def audit(
        self, *, session_id: str | None = None, action: str | None = None
    ) -> list[AuditEvent]:
        """Oldest first."""
        async with self.db() as db:
            rows = await audit_query(db, AuditQuery(session_id=session_id, action=action))
        return rows[::-1]

    async def aclose(self) -> None:
        await self.sessions.aclose()
        await self.auth.aclose()
        await self.engine.dispose()


StartMachine = Callable[[TunnelProvider], Awaitable[Machine]]


async def build_machine(settings: Settings, tunnels: TunnelProvider) -> Machine:
    """Migrate and seed the database like a broker start; the caller closes
    the machine (`Machine.aclose`), the provider stays the caller's."""
    engine = create_engine(settings.database_url, busy_timeout_ms=settings.database.busy_timeout_ms)
    try:
        await migrate(engine)
        db = session_factory(engine)
        await seed_workspaces(db, settings)
    except BaseException:
        await engine.dispose()
        raise
    events = EventBus()
    auth = Authenticator(settings.auth)
    sessions = SessionService(db, settings, tunnels, events)
    machine = Machine(settings, engine, db, sessions, Credentials(db, auth, settings), auth)

    async def note(event: SessionEnded) -> None:
        machine.ended.append(event)

    events.subscribe(note)
    return machine
