"""One receiver per web process for the viewers' pushes.

The broadcaster sends each push once to the ``sessions`` group. Were every
viewer's consumer a member, each push would wake every consumer's own
receive: with channels-redis a lock, two futures and a wait per viewer per
push, on the event loop that also writes the frames (a quarter of a loaded
worker's loop, docs/notes/fanout.md). Instead the process's ``Relay`` is the
group's one member here: it receives each push once and writes it to every
local viewer's socket. The group has members exactly while some process has
viewers, so the broadcaster still renders nothing while nobody watches.

A relay belongs to one event loop and one channel layer (``relay_for``). It
joins the group when its first viewer arrives and leaves it after its last
one; in between it is a ``GroupMember``, which keeps it in the group (rejoins,
retries) and receives one message at a time.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog
from channels.layers import BaseChannelLayer

from adminpanel.live.broadcast import GROUP, MESSAGE_TYPE
from adminpanel.live.group_member import GroupMember

log = structlog.get_logger(__name__)


class Viewer(Protocol):
    """What the relay needs of a viewer: a way to write one push to its socket."""

    async def push(self, html: str) -> None: ...


Accept = Callable[[], Awaitable[None]]


class Relay:
    """Receives the group's pushes once and writes each to every local viewer."""

    def __init__(self, layer: BaseChannelLayer, group: str = GROUP) -> None:
        self.layer, self.group = layer, group
        self.viewers: set[Viewer] = set()
        self.member: GroupMember | None = None
        self.pushes = 0
        self._lock = asyncio.Lock()  # a join and a leave never interleave their start and stop

    @property
    def running(self) -> bool:
        return self.member is not None

    async def join(self, viewer: Viewer, accept: Accept | None = None) -> None:
        """Write the group's next pushes to ``viewer``; the first viewer starts the relay.

        ``accept`` (the socket's accept) is awaited once the relay is in the group
        and before the viewer is added: every push sent after the socket opened
        reaches it, and none is written to a socket not yet accepted.
        """
        async with self._lock:
            if self.member is None:
                member = GroupMember(
                    self.layer, self.group, self._received, unreachable="live_relay_unreachable"
                )
                await member.start()
                self.member = member
            if accept is not None:
                try:
                    await accept()
                except BaseException:
                    if not self.viewers:
                        await self._stop()
                    raise
            self.viewers.add(viewer)

    async def leave(self, viewer: Viewer) -> None:
        """Stop writing to ``viewer``; after the last one the relay leaves the group."""
        async with self._lock:
            self.viewers.discard(viewer)
            if not self.viewers:
                await self._stop()

    async def _stop(self) -> None:
        if self.member is not None:
            member, self.member = self.member, None
            await member.stop()

    async def _received(self, message: dict[str, Any]) -> None:
        if message.get("type") == MESSAGE_TYPE:
            await self.forward(message)

    async def forward(self, message: dict[str, Any]) -> None:
        """Write one push to every viewer; one viewer's failure is not the others'."""
        html = message["html"]
        self.pushes += 1
        for viewer in list(self.viewers):
            try:
                await viewer.push(html)
            except Exception as exc:
                log.warning("live_push_failed", error=repr(exc))


# One relay per event loop and layer: a loop's consumers share their loop's relay.
_relays: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[Relay]] = (
    weakref.WeakKeyDictionary()
)


def relay_for(layer: BaseChannelLayer) -> Relay:
    """The running loop's relay over ``layer``, made on first use."""
    relays = _relays.setdefault(asyncio.get_running_loop(), [])
    for relay in relays:
        if relay.layer is layer:
            return relay
    relay = Relay(layer)
    relays.append(relay)
    return relay
