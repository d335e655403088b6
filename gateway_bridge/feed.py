"""What a mode (plugin or observer) is handed by the connection that runs it.

The connection (``connection.Bridge``) owns the socket's life, the queue the
gateway's events wait in and the sink; a mode reads the queue and hands
events back through a ``Link``. The queue's markers and the sink's type live
here so both sides name them the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, TypeVar

from gateway_bridge.client import GatewayClient, Hello
from gateway_bridge.events import RegistryEvent
from gateway_bridge.results import ForceClearResult, RequeueResult

T = TypeVar("T")


class EventSink(Protocol):
    """The store's side. Returns True when it saw a gap and wants a snapshot.

    Raises ``StoreUnavailable`` when it cannot take the batch now (its
    database is down or busy): the bridge then holds the batch and retries.
    """

    async def __call__(self, events: Sequence[RegistryEvent]) -> bool: ...


class StoreUnavailable(Exception):
    """The sink could not store a batch now, and the same batch may succeed later."""


# Where the store's mirror of a gateway stands: (boot id, last applied seq), or None.
ResumePoint = tuple[str, int] | None


class Stopped(Exception):
    """``stop()`` was called while the bridge waited on something."""


class Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


# Queue markers behind the last event: the connection closed / stop() was called.
CLOSED = Marker("closed")
STOP = Marker("stop")
# Not an end: a resync was asked for (``Bridge.request_resync``); look at it now.
WAKE = Marker("wake")
QueueItem = tuple[float, Any] | Marker
EventQueue = asyncio.Queue[QueueItem]


def ends(item: QueueItem | None) -> bool:
    """True for the markers after which the connection's queue has nothing more."""
    return isinstance(item, Marker) and item is not WAKE


class Link(Protocol):
    """The connection's side, as a mode sees it."""

    gateway: str
    # Set when events were dropped (buffer full) or a resync was asked for.
    resync_due: bool

    def clock(self) -> float: ...

    def unless_stopped(self, awaitable: Awaitable[T]) -> Awaitable[T]: ...

    async def deliver(self, events: Sequence[RegistryEvent]) -> bool: ...

    def received(self, events: Sequence[RegistryEvent]) -> None: ...

    def set_state(self, **changes: Any) -> None: ...

    async def resume_point(self) -> ResumePoint: ...

    def connected_client(self, method: str) -> GatewayClient: ...


class Mode(Protocol):
    """Plugin or observer mode: stream one connection, and carry the two commands whose
    gateway calls differ between the modes."""

    name: str

    async def serve(self, client: GatewayClient, hello: Hello, queue: EventQueue) -> None: ...

    async def drain(self, queue: EventQueue) -> None: ...

    async def force_clear(
        self, session_key: str, expect_run_id: str, reason: str
    ) -> ForceClearResult: ...

    async def requeue(
        self, session_key: str, messages: Sequence[tuple[str, str]]
    ) -> list[RequeueResult]: ...
