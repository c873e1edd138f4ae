"""Shared fixtures: where the real guacd captures live."""

from __future__ import annotations

from pathlib import Path

import pytest

# shared/ sits beside the repository (in CI, beside the fresh clone).
GUACD_CAPTURES = Path(__file__).resolve().parents[2].parent / "shared" / "guacd"
CAPTURE_FILES = ("vnc-x11vnc-20s.guac", "rdp-freerdp-shadow-20s.guac", "ssh-sshd-10s.guac")


@pytest.fixture(scope="session")
def captures_dir() -> Path:
    if not GUACD_CAPTURES.is_dir():
        pytest.fail(f"guacd captures not found at {GUACD_CAPTURES}")
    return GUACD_CAPTURES


def read_capture(name: str) -> bytes:
    return (GUACD_CAPTURES / name).read_bytes()
