"""``[limits]``: how long sessions may last and how many a user may hold."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LimitSettings:
    """Session limits (0 disables one); workspaces may override each."""

    max_session_seconds: int = 8 * 3600
    idle_no_viewer_seconds: int = 15 * 60
    idle_no_input_seconds: int = 60 * 60
    max_sessions_per_user: int = 5
    reaper_interval_seconds: float = 15.0
    activity_write_seconds: float = 30.0
    # guacd workspaces: viewers tried and none reached a first `sync` for this
    # long, counted from the first failed try -> end_reason connect_failed.
    connect_failed_seconds: int = 180


def effective_limit(workspace_value: int, default: int) -> int:
    """A workspace's limit: its own when set (> 0), none when negative, else
    the global default (where 0 means none)."""
    if workspace_value < 0:
        return 0
    return workspace_value or default
