"""The channel layer for one process (``make demo``, no Redis): groups sent cheaply.

Channels' ``InMemoryChannelLayer`` does work per message that grows with the
number of viewers, on the event loop the viewers' sockets share: a task per
member on ``group_send``, and a walk over every channel and member for
expired entries on every ``receive``. This layer puts a group's message on
every member's queue in one pass (same checks, copy, expiry and capacity; a
full queue drops that member's copy, as Channels does), and looks for
expired entries at most every ``clean_every_s``: messages expire after a
minute and members after a year, so a second's lateness changes nothing.
The cost it saves is counted in docs/notes/live.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from copy import deepcopy
from typing import Any

from channels.layers import InMemoryChannelLayer


class InProcessChannelLayer(InMemoryChannelLayer):
    clean_every_s = 1.0
    # Another process reaches these groups only through a ChannelHub (layers.in_this_process).
    in_this_process = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next_clean = 0.0
        # Called with a group's name after its membership may have changed.
        self.member_listeners: set[Callable[[str], None]] = set()

    def _members_changed(self, groups: list[str]) -> None:
        for listener in list(self.member_listeners):
            for group in groups:
                listener(group)

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now >= self._next_clean:
            self._next_clean = now + self.clean_every_s
            before = {g: len(m) for g, m in self.groups.items()}
            super()._clean_expired()
            if self.member_listeners:
                self._members_changed(
                    [g for g, n in before.items() if len(self.groups.get(g, ())) != n]
                )

    async def group_add(self, group: str, channel: str) -> None:
        await super().group_add(group, channel)
        self._members_changed([group])

    async def group_discard(self, group: str, channel: str) -> None:
        await super().group_discard(group, channel)
        self._members_changed([group])

    async def group_has_members(self, group: str) -> bool:
        """Whether ``group`` has a member (``layers.GroupAware``)."""
        return bool(self.groups.get(group))

    async def flush(self) -> None:
        groups = list(self.groups)
        await super().flush()
        self._members_changed(groups)

    def _queue(self, channel: str) -> asyncio.Queue[Any]:
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        return queue

    async def receive(self, channel: str) -> dict[str, Any]:
        # As Channels' receive, without building a spare queue on every call.
        self.require_valid_channel_name(channel)
        self._clean_expired()
        queue = self._queue(channel)
        try:
            _, message = await queue.get()
        finally:
            if queue.empty():  # an idle channel keeps no queue
                self.channels.pop(channel, None)
        return message  # type: ignore[no-any-return]

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        assert "__asgi_channel__" not in message
        self.require_valid_group_name(group)
        self._clean_expired()
        members = self.groups.get(group)
        if not members:
            return
        expires = time.time() + self.expiry
        for channel in list(members):
            queue = self._queue(channel)
            # A full queue: that member is not reading; the others still get theirs.
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait((expires, deepcopy(message)))
