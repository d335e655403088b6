"""A simulated gateway configured like a stock OpenClaw: no companion plugin.

``SimGateway`` has no knob to leave Runboard's ``runboard.registry.*``
methods out of ``hello-ok``; this subclass drops them (and the
``runboard.registry`` event) from what it advertises, which is all the bridge
looks at to choose observer mode. Everything else is the real simulated
gateway on a real loopback socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from gateway_bridge.simgateway.server import Connection, SimGateway

PLUGIN_PREFIX = "runboard.registry"


class PluginlessSimGateway(SimGateway):
    def _hello(self, conn: Connection, params: dict[str, Any]) -> dict[str, Any]:
        hello = super()._hello(conn, params)
        features = hello["features"]
        features["methods"] = [m for m in features["methods"] if not m.startswith(PLUGIN_PREFIX)]
        features["events"] = [e for e in features["events"] if not e.startswith(PLUGIN_PREFIX)]
        return hello

    def drop_connections(self) -> None:
        """Cut every client socket without a close frame; the gateway keeps running."""
        for conn in list(self._connections):
            if conn.ws.transport is not None:
                conn.ws.transport.abort()


ObserverGatewayFactory = Callable[..., Awaitable[PluginlessSimGateway]]


@pytest.fixture
async def observer_gateway() -> AsyncIterator[ObserverGatewayFactory]:
    started: list[PluginlessSimGateway] = []

    async def start(*, port: int = 0, **options: Any) -> PluginlessSimGateway:
        gateway = PluginlessSimGateway(**options)
        await gateway.start(port=port)
        started.append(gateway)
        return gateway

    yield start
    for gateway in reversed(started):
        await gateway.stop()
