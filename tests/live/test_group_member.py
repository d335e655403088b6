"""GroupMember: a channel kept in its group; what it receives, it hands on, one at a time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from adminpanel.live import group_member
from adminpanel.live.group_member import GroupMember
from adminpanel.live.layers import group_has_members
from adminpanel.live.memory_layer import InProcessChannelLayer

GROUP = "members-test"


class Inbox:
    """Keeps what it is handed; ``fail_on`` makes it raise on that text."""

    def __init__(self, fail_on: str = "") -> None:
        self.fail_on = fail_on
        self.received: asyncio.Queue[str] = asyncio.Queue()

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["text"] == self.fail_on:
            raise ValueError(f"cannot take {message['text']!r}")
        self.received.put_nowait(message["text"])

    async def next(self) -> str:
        return await asyncio.wait_for(self.received.get(), 5)


def note(text: str) -> dict[str, Any]:
    return {"type": "note", "text": text}


async def test_a_member_receives_the_groups_messages_until_it_stops() -> None:
    layer, inbox = InProcessChannelLayer(), Inbox()
    member = GroupMember(layer, GROUP, inbox, unreachable="test_unreachable")
    await member.start()

    await layer.group_send(GROUP, note("one"))
    assert await inbox.next() == "one"

    await member.stop()
    assert not await group_has_members(layer, GROUP)
    assert member.channel is None


async def test_a_message_its_handler_fails_on_does_not_end_the_receiving() -> None:
    layer, inbox = InProcessChannelLayer(), Inbox(fail_on="bad")
    member = GroupMember(layer, GROUP, inbox, unreachable="test_unreachable")
    await member.start()
    try:
        await layer.group_send(GROUP, note("bad"))
        await layer.group_send(GROUP, note("good"))

        assert await inbox.next() == "good"
    finally:
        await member.stop()


async def test_a_member_whose_layer_failed_joins_again_and_receives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(group_member, "RETRY_AFTER_S", 0.05)
    layer, inbox = InProcessChannelLayer(), Inbox()
    failures = [ConnectionError("the layer went away")]
    receive = layer.receive

    async def flaky_receive(channel: str) -> dict[str, Any]:
        if failures:
            await layer.flush()  # what a restarted Redis does: every group forgotten
            raise failures.pop()
        return await receive(channel)

    monkeypatch.setattr(layer, "receive", flaky_receive)
    member = GroupMember(layer, GROUP, inbox, unreachable="test_unreachable")
    await member.start()
    try:
        async with asyncio.timeout(5):
            while failures or not await group_has_members(layer, GROUP):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await layer.group_send(GROUP, note("after"))

        assert await inbox.next() == "after"
    finally:
        await member.stop()
