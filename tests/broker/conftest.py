"""Fixtures for the tests of the session state machine and the credentials
without HTTP (`tests.broker.machine`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from broker.config import Settings
from tests.broker.machine import WORKSPACES, Machine, StartMachine, build_machine
from tunnels.base import TunnelProvider


@pytest.fixture
def machine_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(workspaces=WORKSPACES)


@pytest.fixture
async def start_machine(machine_settings: Settings) -> AsyncIterator[StartMachine]:
    """Start the state machine on the test database with a tunnel provider;
    each call is one broker start on the same database. All are closed after
    the test."""
    machines: list[Machine] = []

    async def start(tunnels: TunnelProvider) -> Machine:
        machine = await build_machine(machine_settings, tunnels)
        machines.append(machine)
        return machine

    yield start
    for machine in machines:
        await machine.aclose()
