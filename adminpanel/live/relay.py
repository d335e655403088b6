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
one, rejoins every ``REJOIN_EVERY_S`` (a group member expires) and after the
layer failed (a restarted Redis forgot the group), and receives until then:
one receive at a time, never cancelled while viewers remain, because
channels-redis drops a channel's buffered messages when a receive on it is
cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import Any, Protocol

import structlog
from channels.layers import BaseChannelLayer

from adminpanel.live.broadcast import GROUP, MESSAGE_TYPE

log = structlog.get_logger(__name__)

REJOIN_EVERY_S = 30.0
RETRY_AFTER_S = 1.0


class Viewer(Protocol):
    """What the relay needs of a viewer: a way to write one push to its socket."""

    async def push(self, html: str) -> None: ...


class Relay:
    """Receives the group's pushes once and writes each to every local viewer."""

    def __init__(self, layer: BaseChannelLayer, group: str = GROUP) -> None:
        self.layer, self.group = layer, group
        self.viewers: set[Viewer] = set()
        self.channel: str | None = None
        self.pushes = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()  # a join and a leave never interleave their start and stop

    @property
    def running(self) -> bool:
        return self.channel is not None

    async def join(self, viewer: Viewer) -> None:
        """Write the group's next pushes to ``viewer``; the first viewer starts the relay."""
        async with self._lock:
            self.viewers.add(viewer)
            if self.channel is None:
                await self._start()

    async def leave(self, viewer: Viewer) -> None:
        """Stop writing to ``viewer``; after the last one the relay leaves the group."""
        async with self._lock:
            self.viewers.discard(viewer)
            if not self.viewers and self.channel is not None:
                await self._stop()

    async def _start(self) -> None:
        # The default prefix, as the consumers': channels-redis pops one Redis key for
        # all of a process's channels, by whoever receives first, only if they share it.
        self.channel = channel = await self.layer.new_channel()
        try:
            await self.layer.group_add(self.group, channel)
        except Exception as exc:  # the layer (Redis) is away: the receive loop joins later
            log.warning("live_relay_unreachable", error=repr(exc))
        self._tasks = [
            asyncio.create_task(self._receive(channel), name="live-relay"),
            asyncio.create_task(self._rejoin(channel), name="live-relay-rejoin"),
        ]

    async def _stop(self) -> None:
        channel, self.channel = self.channel, None
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if channel is not None:
            with contextlib.suppress(Exception):  # a Redis that is away forgets it anyway
                await self.layer.group_discard(self.group, channel)

    async def _rejoin(self, channel: str) -> None:
        while True:
            await asyncio.sleep(REJOIN_EVERY_S)
            with contextlib.suppress(Exception):  # _receive rejoins when the layer fails
                await self.layer.group_add(self.group, channel)

    async def _receive(self, channel: str) -> None:
        while True:
            try:
                message = await self.layer.receive(channel)
            except Exception as exc:  # the layer is away: wait, then join again
                log.warning("live_relay_unreachable", error=repr(exc))
                await asyncio.sleep(RETRY_AFTER_S)
                with contextlib.suppress(Exception):
                    await self.layer.group_add(self.group, channel)
                continue
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
