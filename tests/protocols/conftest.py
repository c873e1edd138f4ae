"""Shared fixtures: where the real guacd captures live."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from protocols.simulated.guacd import SimulatedGuacd, SimulatedGuacdOptions

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


@pytest.fixture
async def start_guacd() -> AsyncIterator[Callable[..., Awaitable[SimulatedGuacd]]]:
    """Start simulated guacds on 127.0.0.1:0; all are closed after the test."""
    servers: list[SimulatedGuacd] = []

    async def start(**options: Any) -> SimulatedGuacd:
        tls = options.pop("tls", None)
        defaults: dict[str, Any] = {"first_frame_delay": 0.05, "captures_dir": GUACD_CAPTURES}
        server = SimulatedGuacd(SimulatedGuacdOptions(**(defaults | options)))
        await server.start("127.0.0.1", 0, tls=tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.aclose()
