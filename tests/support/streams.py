"""Registry events as a gateway numbers them, applied through ingest: pages and API tests fill
the store exactly as the bridge fills it."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from adminpanel.detect import Thresholds
from adminpanel.ingest import Ingestor
from gateway_bridge.events import (
    GatewayStarted,
    LockAcquired,
    RegistryEvent,
    RunEnded,
)

T0 = 1_800_000_000.0
NOW = T0 + 60


class Stream:
    """Registry events of one gateway boot, numbered as the gateway numbers them."""

    def __init__(self, gateway: str = "gw-a", boot_id: str = "boot-1") -> None:
        self.gateway, self.boot_id = gateway, boot_id
        self._seq = itertools.count(1)

    def __call__(self, cls: type[RegistryEvent], at: float, **fields: object) -> RegistryEvent:
        return cls(
            gateway=self.gateway,
            boot_id=self.boot_id,
            seq=next(self._seq),
            at=at,
            received_at=at,
            **fields,
        )


def locked_sessions(stream: Stream, count: int, *, leaked: int = 0) -> Iterator[RegistryEvent]:
    yield stream(GatewayStarted, T0, version="2026.5.28", profile="2026.5.28")
    for n in range(count):
        key = f"agent:main:telegram:direct:{n}"
        yield stream(
            LockAcquired, T0 + n * 0.01, session_key=key, run_id=f"run-{n}", phase="running"
        )
        if n < leaked:
            yield stream(RunEnded, T0 + 1, session_key=key, run_id=f"run-{n}", result="aborted")


def ingest(events: Iterator[RegistryEvent]) -> None:
    Ingestor(thresholds=Thresholds(), clock=lambda: NOW).apply(list(events))
