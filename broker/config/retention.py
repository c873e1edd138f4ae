"""``[retention]``: how long ended sessions, audit entries, viewer credentials and
recordings are kept before the pruner (`broker.core.retention`) removes them.

0 means "keep forever" for every age. Two orders are enforced, because the
broker's history must stay explainable: a recording never outlives its
session row, and a session row never outlives its audit trail. A session's
launch entry is older than its end by the session's length, so the audit
trail must be kept strictly longer (at least a day) than sessions.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.config.errors import ConfigError

MAX_BATCH = 10_000  # far below the bind-parameter limits of SQLite and PostgreSQL


@dataclass(frozen=True)
class RetentionSettings:
    """Ages in whole days (hours for viewer credentials); 0 keeps forever."""

    # Ended sessions, counted from their end; their viewer tokens and app
    # cookies go with them. Sessions whose grant is not yet revoked wait.
    sessions_days: int = 90
    # Audit entries, counted from when they were written. A year plus a
    # margin, so a yearly audit still finds the whole previous year.
    audit_days: int = 400
    # Viewer tokens and app cookies of ended sessions, counted from the end.
    # They stop working the moment their session ends; the row is kept this
    # long only so a viewer page still learns "session ended" rather than
    # "invalid link". 0: kept as long as their session.
    viewer_tokens_hours: int = 24
    # Session recordings (not stored by the broker yet: accepted and checked,
    # nothing is pruned for them).
    recordings_days: int = 30
    interval_seconds: float = 3600.0
    batch_size: int = 500

    def __post_init__(self) -> None:
        for name in ("sessions_days", "audit_days", "viewer_tokens_hours", "recordings_days"):
            if getattr(self, name) < 0:
                raise ConfigError(f"'retention.{name}' must be 0 (keep forever) or more")
        if self.interval_seconds <= 0:
            raise ConfigError("'retention.interval_seconds' must be greater than 0")
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise ConfigError(f"'retention.batch_size' must be between 1 and {MAX_BATCH}")
        if _longer(self.recordings_days, self.sessions_days):
            raise ConfigError(
                f"'retention.recordings_days' ({_days(self.recordings_days)}) would keep a "
                f"recording longer than its session ('retention.sessions_days' = "
                f"{_days(self.sessions_days)}); lower it or raise sessions_days"
            )
        if self.audit_days and not 0 < self.sessions_days < self.audit_days:
            raise ConfigError(
                f"'retention.sessions_days' ({_days(self.sessions_days)}) would keep a session "
                f"as long as or longer than its audit trail ('retention.audit_days' = "
                f"{_days(self.audit_days)}); audit_days must be greater than sessions_days"
            )


def _longer(days: int, limit: int) -> bool:
    """Whether keeping something ``days`` outlasts ``limit`` (0: forever)."""
    if limit == 0:
        return False
    return days == 0 or days > limit


def _days(value: int) -> str:
    return "0, forever" if value == 0 else str(value)
