"""Shared pieces for the bridge tests: a list sink and a bridge running in a task."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

from gateway_bridge.connection import Bridge, ConnectionState
from gateway_bridge.events import RegistryEvent, Snapshot


class ListSink:
    """A real sink: keeps every event it is given, in order, and can report gaps.

    ``gaps`` lists answers to give for the next deliveries (True = "I saw a
    gap, send a snapshot"); after it runs out the sink answers False.
    """

    def __init__(self, gaps: Sequence[bool] = ()) -> None:
        self.events: list[RegistryEvent] = []
        self.batches: list[list[RegistryEvent]] = []
        self._gaps = list(gaps)

    async def __call__(self, events: Sequence[RegistryEvent]) -> bool:
        self.batches.append(list(events))
        self.events.extend(events)
        return self._gaps.pop(0) if self._gaps else False

    def snapshots(self) -> list[Snapshot]:
        return [e for e in self.events if isinstance(e, Snapshot)]

    def of_kind(self, kind: type[RegistryEvent], **fields: Any) -> list[RegistryEvent]:
        return [
            e
            for e in self.events
            if isinstance(e, kind) and all(getattr(e, k) == v for k, v in fields.items())
        ]


class StateLog:
    """Every ``ConnectionState`` the bridge reported, for ``on_state``."""

    def __init__(self) -> None:
        self.states: list[ConnectionState] = []

    def __call__(self, state: ConnectionState) -> None:
        self.states.append(state)


def quick_bridge_settings(**options: Any) -> dict[str, Any]:
    """Bridge options for tests: short timeouts and backoff, a seeded jitter."""
    return {
        "call_timeout_s": 2.0,
        "connect_timeout_s": 2.0,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
        "batch_wait_s": 0.01,
        "rng": random.Random(1),
        **options,
    }


@contextlib.asynccontextmanager
async def running(bridge: Bridge) -> AsyncIterator[Bridge]:
    """Run ``bridge`` in a task for the block; always stop it and reap the task."""
    task = asyncio.create_task(bridge.run())
    try:
        yield bridge
    finally:
        await bridge.stop()
        async with asyncio.timeout(5):
            await task
