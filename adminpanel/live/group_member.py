"""A channel kept in a channel-layer group while it runs: join, receive, rejoin.

The web process's relay (the viewers' pushes) and each bridge's command
listener are both one channel in one group that must stay there until they
stop. Channel layers forget a member after a while (channels-redis' group
expiry) and a restarted Redis forgets every group at once, so a member joins
again every ``REJOIN_EVERY_S`` and after a receive failed. It receives one
message at a time, and its receive is never cancelled but at the end:
channels-redis drops a channel's buffered messages when a receive on it is
cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from channels.layers import BaseChannelLayer

log = structlog.get_logger(__name__)

# A join is one cheap write; channels-redis forgets a member after a day, Redis restarted at once.
REJOIN_EVERY_S = 30.0
# After a failed receive (the layer is away), wait this long, join again and receive.
RETRY_AFTER_S = 1.0

OnMessage = Callable[[dict[str, Any]], Awaitable[None]]


class GroupMember:
    """One channel in ``group`` from ``start()`` to ``stop()``; each message goes to ``on_message``.

    ``unreachable`` names the warning logged (with ``log_fields``) each time the
    layer cannot be reached. ``on_message`` is awaited before the next receive:
    one that takes long should start a task of its own.
    """

    def __init__(
        self,
        layer: BaseChannelLayer,
        group: str,
        on_message: OnMessage,
        *,
        unreachable: str,
        prefix: str = "",
        **log_fields: Any,
    ) -> None:
        self.layer, self.group, self.on_message = layer, group, on_message
        self.unreachable, self.prefix, self.log_fields = unreachable, prefix, log_fields
        self.channel: str | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Take a channel and join the group; if the layer is away, the receive loop joins later."""
        # No prefix: the layer's default, the consumers' own. channels-redis pops one Redis
        # key for all of a process's channels, by whoever receives first, only if they share it.
        prefix = (self.prefix,) if self.prefix else ()
        self.channel = channel = await self.layer.new_channel(*prefix)
        try:
            await self.layer.group_add(self.group, channel)
        except Exception as exc:
            self._warn(exc)
        self._tasks = [
            asyncio.create_task(self._receive(channel), name=f"{self.group}-receive"),
            asyncio.create_task(self._rejoin(channel), name=f"{self.group}-rejoin"),
        ]

    async def stop(self) -> None:
        """Stop receiving and leave the group (a layer that is away forgets the member anyway)."""
        channel, self.channel = self.channel, None
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if channel is not None:
            with contextlib.suppress(Exception):
                await self.layer.group_discard(self.group, channel)

    async def _rejoin(self, channel: str) -> None:
        while True:
            await asyncio.sleep(REJOIN_EVERY_S)
            with contextlib.suppress(Exception):  # _receive joins again when the layer failed
                await self.layer.group_add(self.group, channel)

    async def _receive(self, channel: str) -> None:
        while True:
            try:
                message = await self.layer.receive(channel)
            except Exception as exc:  # the layer is away: wait, then join again
                self._warn(exc)
                await asyncio.sleep(RETRY_AFTER_S)
                with contextlib.suppress(Exception):
                    await self.layer.group_add(self.group, channel)
                continue
            try:
                await self.on_message(message)
            except Exception as exc:  # one bad message does not end the member's receiving
                log.exception("group_message_failed", group=self.group, error=repr(exc))

    def _warn(self, exc: Exception) -> None:
        log.warning(self.unreachable, error=repr(exc), **self.log_fields)
