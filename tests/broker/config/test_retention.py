"""``[retention]``: its defaults, its TOML keys and ``BROKER_RETENTION_*``
variables, and the settings refused because they would keep a recording
longer than its session or a session longer than its audit trail."""

from __future__ import annotations

import pytest

from broker.config import RetentionSettings
from tests.broker.config.support import SECRET_ENV, load, refused


def test_defaults(write):
    retention = load(write("")).retention
    assert retention == RetentionSettings(
        sessions_days=90,
        audit_days=400,
        viewer_tokens_hours=24,
        recordings_days=30,
        interval_seconds=3600.0,
        batch_size=500,
    )


def test_every_key_is_read_from_the_file(write):
    text = """
    [retention]
    sessions_days = 30
    audit_days = 31
    viewer_tokens_hours = 0
    recordings_days = 7
    interval_seconds = 60
    batch_size = 50
    """
    assert load(write(text)).retention == RetentionSettings(30, 31, 0, 7, 60.0, 50)


def test_keep_forever_everywhere_is_accepted(write):
    text = """
    [retention]
    sessions_days = 0
    audit_days = 0
    viewer_tokens_hours = 0
    recordings_days = 0
    """
    retention = load(write(text)).retention
    assert (retention.sessions_days, retention.audit_days, retention.recordings_days) == (0, 0, 0)


def test_environment_overrides_the_file(write):
    env = {**SECRET_ENV, "BROKER_RETENTION_AUDIT_DAYS": "800", "BROKER_RETENTION_BATCH_SIZE": "9"}
    retention = load(write("[retention]\naudit_days = 500\n"), env).retention
    assert (retention.audit_days, retention.batch_size) == (800, 9)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        # A recording kept longer than its session.
        ("recordings_days = 91", ["'retention.recordings_days' (91)", "'retention.sessions_days'"]),
        ("recordings_days = 0", ["'retention.recordings_days' (0, forever)", "sessions_days"]),
        # A session kept as long as, or longer than, its audit trail.
        ("sessions_days = 400", ["'retention.sessions_days' (400)", "'retention.audit_days'"]),
        ("sessions_days = 500", ["'retention.sessions_days' (500)", "'retention.audit_days'"]),
        ("sessions_days = 0", ["'retention.sessions_days' (0, forever)", "audit_days"]),
        ("audit_days = 60", ["'retention.audit_days' = 60", "greater than sessions_days"]),
    ],
    ids=[
        "recording-outlives-session",
        "recording-forever",
        "session-as-long-as-audit",
        "session-outlives-audit",
        "session-forever",
        "audit-too-short",
    ],
)
def test_a_record_outliving_what_explains_it_is_refused(write, text, names):
    message = refused(write(f"[retention]\n{text}\n"))
    for name in names:
        assert name in message


def test_forever_on_the_longer_side_allows_anything_shorter(write):
    text = "[retention]\naudit_days = 0\nsessions_days = 5000\nrecordings_days = 5000\n"
    assert load(write(text)).retention.sessions_days == 5000


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("sessions_days = -1", "'retention.sessions_days'"),
        ("viewer_tokens_hours = -5", "'retention.viewer_tokens_hours'"),
        ("interval_seconds = 0", "'retention.interval_seconds'"),
        ("batch_size = 0", "'retention.batch_size'"),
        ("batch_size = 100000", "'retention.batch_size'"),
        ("audit_days = '400'", "'retention.audit_days'"),
        ("keep_days = 3", "'retention.keep_days'"),
    ],
)
def test_bad_values_are_named(write, text, key):
    assert key in refused(write(f"[retention]\n{text}\n"))
