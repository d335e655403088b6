"""The one-process channel layer: a group send reaches every member once, as Channels' does."""

from __future__ import annotations

import time

import pytest
from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer, get_channel_layer

from adminpanel.live.layers import group_has_members, in_this_process
from adminpanel.live.memory_layer import InProcessChannelLayer


async def members(layer: InProcessChannelLayer, count: int, group: str = "g") -> list[str]:
    channels = [await layer.new_channel() for _ in range(count)]
    for channel in channels:
        await layer.group_add(group, channel)
    return channels


def nothing_waits(layer: InProcessChannelLayer, channel: str) -> bool:
    return channel not in layer.channels or layer.channels[channel].empty()


@pytest.mark.embedded_only
def test_it_is_the_layer_without_redis() -> None:
    assert isinstance(get_channel_layer(), InProcessChannelLayer)


async def test_every_member_receives_the_message_once() -> None:
    layer = InProcessChannelLayer()
    channels = await members(layer, 3)
    other = await layer.new_channel()
    await layer.group_send("g", {"type": "sessions.changed", "html": "<tr>", "rows": 1})
    for channel in channels:
        assert await layer.receive(channel) == {
            "type": "sessions.changed", "html": "<tr>", "rows": 1,
        }  # fmt: skip
        assert nothing_waits(layer, channel)
    assert nothing_waits(layer, other)


async def test_each_member_gets_its_own_copy() -> None:
    layer = InProcessChannelLayer()
    first, second = await members(layer, 2)
    await layer.group_send("g", {"type": "t", "rows": [1]})
    mine = await layer.receive(first)
    mine["rows"].append(2)
    assert (await layer.receive(second))["rows"] == [1]


async def test_a_full_member_misses_the_message_and_the_others_do_not() -> None:
    layer = InProcessChannelLayer(capacity=1)
    stuck, reading = await members(layer, 2)
    await layer.group_send("g", {"type": "t", "n": 1})
    assert await layer.receive(reading) == {"type": "t", "n": 1}
    await layer.group_send("g", {"type": "t", "n": 2})  # ``stuck`` is full: dropped there
    assert await layer.receive(reading) == {"type": "t", "n": 2}
    assert await layer.receive(stuck) == {"type": "t", "n": 1}
    with pytest.raises(ChannelFull):
        await layer.send(stuck, {"type": "t", "n": 3})
        await layer.send(stuck, {"type": "t", "n": 4})


async def test_an_empty_or_unknown_group_sends_nothing() -> None:
    layer = InProcessChannelLayer()
    await layer.group_send("nobody", {"type": "t"})
    channel = (await members(layer, 1))[0]
    await layer.group_discard("g", channel)
    await layer.group_send("g", {"type": "t"})
    await layer.send(channel, {"type": "sentinel"})
    assert await layer.receive(channel) == {"type": "sentinel"}  # and not the group's message


async def test_expired_members_and_messages_are_forgotten_within_a_second() -> None:
    layer = InProcessChannelLayer(group_expiry=60, expiry=60)
    old, new = await members(layer, 2)
    await layer.group_send("g", {"type": "t"})  # and the first look for expired entries
    layer.groups["g"][old] = time.time() - 120  # joined two minutes ago
    _, message = layer.channels[new].get_nowait()
    layer.channels[new].put_nowait((time.time() - 1, message))  # sent a minute ago
    await layer.group_send("g", {"type": "t", "n": 2})
    assert old in layer.groups["g"]  # not looked for again yet
    layer._next_clean = 0.0  # as if ``clean_every_s`` had passed
    await layer.group_send("g", {"type": "t", "n": 3})
    assert old not in layer.groups["g"]
    # The expired message went, and the channel with it (Channels drops a channel
    # whose message expired from its groups too).
    assert new not in layer.groups["g"]
    assert await layer.receive(old) == {"type": "t"}


async def test_a_bad_message_or_group_name_is_refused() -> None:
    layer = InProcessChannelLayer()
    with pytest.raises(AssertionError):
        await layer.group_send("g", "not a dict")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await layer.group_send("bad group name!", {"type": "t"})


async def test_the_layer_says_whether_a_group_has_members() -> None:
    layer = InProcessChannelLayer()
    assert not await layer.group_has_members("g")
    [channel] = await members(layer, 1)
    assert await layer.group_has_members("g")
    await layer.group_discard("g", channel)
    assert not await layer.group_has_members("g")


async def test_a_layer_that_cannot_say_is_taken_to_have_members() -> None:
    assert await group_has_members(InMemoryChannelLayer(), "nobody")
    assert not await group_has_members(InProcessChannelLayer(), "nobody")


def test_only_the_in_process_layer_needs_a_hub_to_reach_other_processes() -> None:
    assert in_this_process(InProcessChannelLayer())
    assert not in_this_process(InMemoryChannelLayer())
    assert not in_this_process(None)
