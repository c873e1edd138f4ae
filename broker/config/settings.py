"""`Settings`: every section, as the rest of the broker reads it.

A new section is a module of its own with a frozen dataclass, a field here
and an entry in `SECTIONS` (its TOML name and the type the loader builds from
it); ``config.example.toml`` documents each of its keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from broker.config.apps import AppsSettings
from broker.config.auth import AuthSettings
from broker.config.database import DatabaseSettings
from broker.config.demo import DemoSettings
from broker.config.guacd import GuacdSettings, ViewerSettings
from broker.config.limits import LimitSettings
from broker.config.ratelimit import RateLimitSettings
from broker.config.retention import RetentionSettings
from broker.config.server import ServerSettings
from broker.config.tunnel import NetBirdSection, TunnelSettings
from broker.config.workspaces import WorkspaceConfig
from tunnels.netbird.settings import NetBirdSettings

# TOML section → the type its table is built into. ``[netbird]`` is read as a
# `NetBirdSection` and becomes ``Settings.netbird`` once its token is known.
SECTIONS: dict[str, type] = {
    "server": ServerSettings,
    "database": DatabaseSettings,
    "auth": AuthSettings,
    "tunnel": TunnelSettings,
    "netbird": NetBirdSection,
    "guacd": GuacdSettings,
    "limits": LimitSettings,
    "ratelimit": RateLimitSettings,
    "viewer": ViewerSettings,
    "demo": DemoSettings,
    "apps": AppsSettings,
    "retention": RetentionSettings,
}


@dataclass(frozen=True)
class Settings:
    """``netbird`` is the NetBird provider's settings when ``tunnel.provider``
    is netbird (outside the demo), else None."""

    server: ServerSettings = field(default_factory=ServerSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    tunnel: TunnelSettings = field(default_factory=TunnelSettings)
    netbird: NetBirdSettings | None = None
    guacd: GuacdSettings = field(default_factory=GuacdSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    ratelimit: RateLimitSettings = field(default_factory=RateLimitSettings)
    viewer: ViewerSettings = field(default_factory=ViewerSettings)
    demo: DemoSettings = field(default_factory=DemoSettings)
    apps: AppsSettings = field(default_factory=AppsSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    workspaces: tuple[WorkspaceConfig, ...] = ()

    @property
    def data_path(self) -> Path:
        return Path(self.server.data_dir)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{(self.data_path / 'broker.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def workspace(self, workspace_id: str) -> WorkspaceConfig | None:
        return next((w for w in self.workspaces if w.id == workspace_id), None)
