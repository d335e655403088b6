"""A simulated gateway configured like a stock OpenClaw: no companion plugin.

``SimGateway(plugin=False)`` lists no ``runboard.registry.*`` method or event
in ``hello-ok`` and answers those methods "unknown method", as a real gateway
without the plugin does; the bridge then runs in observer mode. The subclass
only adds a way to cut client sockets while the gateway keeps running.
Everything is the real simulated gateway on a real loopback socket.

Like both real releases, it leaves waiting messages out of ``sessions.list``'s
``activeRunIds`` (so observer mode cannot see them wait); the tests of the
observer's waiter translation start it with ``waiters_in_active_run_ids=True``,
a gateway that does list them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from simgateway.server import SimGateway


class PluginlessSimGateway(SimGateway):
    def __init__(self, **options: Any) -> None:
        super().__init__(plugin=False, **options)

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
