"""Fixtures for the protocol tests: simulated guacds that replay the real
guacd captures (tests/data)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from protocols.simulated.guacd import SimulatedGuacd, SimulatedGuacdOptions
from tests.conftest import CAPTURE_FILES, GUACD_CAPTURES

__all__ = ["CAPTURE_FILES", "GUACD_CAPTURES", "read_capture"]


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
