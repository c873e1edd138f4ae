"""``[database]``: the SQLite file or the PostgreSQL server the broker keeps state in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = ""
    auto_migrate: bool = False
    busy_timeout_ms: int = 5000
    pool_size: int = 10
    statement_timeout_seconds: float = 10.0
    echo: bool = False
