"""Pytest fixtures for the simulated gateway (``pytest_plugins`` in conftest).

``sim_gateway`` is a factory: ``gw = await sim_gateway(profile="2026.5.28",
terminal_settle_s=0.3)`` starts a ``SimGateway`` on a free loopback port (or
``port=`` to restart on the same one) and stops every gateway it started at
teardown, whatever the test did to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from simgateway.server import SimGateway

SimGatewayFactory = Callable[..., Awaitable[SimGateway]]
# Short turns, so a test sees whole runs in well under a second.
FAST = {"turn_median_s": 0.05, "turn_cap_s": 0.1, "activity_interval_s": 0.02}


@pytest.fixture
async def sim_gateway() -> AsyncIterator[SimGatewayFactory]:
    started: list[SimGateway] = []

    async def start(*, port: int = 0, **options: Any) -> SimGateway:
        gateway = SimGateway(**options)
        await gateway.start(port=port)
        started.append(gateway)
        return gateway

    yield start
    for gateway in reversed(started):
        await gateway.stop()
