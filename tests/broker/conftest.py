"""Fixtures of the broker tests that stream desktops: a simulated guacd and a
broker configured with the viewer test workspaces."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from protocols.simulated_guacd import SimulatedGuacd, SimulatedGuacdOptions
from tests.broker.apiclient import Api
from tests.broker.viewer_support import WORKSPACES


@pytest.fixture
async def guacd() -> AsyncIterator[SimulatedGuacd]:
    server = SimulatedGuacd(SimulatedGuacdOptions(first_frame_delay=0.05))
    await server.start(host="127.0.0.1", port=0)
    yield server
    await server.aclose()


@pytest.fixture
def broker_for(start_broker, make_settings, monkeypatch) -> Callable[..., Any]:
    monkeypatch.setenv("TEST_WS_PASSWORD", "s3cret-Pa55word")

    async def start(guacd_port: int, **env: str) -> Api:
        settings = make_settings(
            workspaces=WORKSPACES,
            env={
                "BROKER_GUACD_ENDPOINTS": f"127.0.0.1:{guacd_port}",
                "BROKER_GUACD_CONNECT_TIMEOUT_SECONDS": "2",
                **env,
            },
        )
        return Api(await start_broker(settings))

    return start
