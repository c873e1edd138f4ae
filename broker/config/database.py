"""``[database]``: the SQLite file or the PostgreSQL server the broker keeps state in."""

from __future__ import annotations

from dataclasses import dataclass

from broker.config.errors import ConfigError


@dataclass(frozen=True)
class DatabaseSettings:
    """PostgreSQL: each replica holds up to ``pool_size`` connections, and
    opens up to ``max_overflow`` more under load (closed once returned), so
    the server must allow replicas x (pool_size + max_overflow)."""

    url: str = ""
    auto_migrate: bool = False
    busy_timeout_ms: int = 5000
    pool_size: int = 10
    max_overflow: int = 10
    statement_timeout_seconds: float = 10.0
    echo: bool = False

    def __post_init__(self) -> None:
        if self.max_overflow < 0:
            raise ConfigError("'database.max_overflow' must be 0 or more")
