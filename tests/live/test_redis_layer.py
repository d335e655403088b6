"""The Redis layer answers ``group_has_members``, against a real redis-server on a Unix socket."""

from __future__ import annotations

import importlib
import sys
import time
from typing import Any

import pytest

from adminpanel.live.layers import group_has_members, in_this_process


async def test_the_redis_layer_says_whether_a_group_has_members(layer: Any) -> None:
    assert not await layer.group_has_members("sessions")
    channel = await layer.new_channel()
    await layer.group_add("sessions", channel)
    assert await group_has_members(layer, "sessions")  # as the broadcaster asks
    await layer.group_discard("sessions", channel)
    assert not await layer.group_has_members("sessions")


async def test_a_member_past_the_group_expiry_is_not_counted(layer: Any) -> None:
    channel = await layer.new_channel()
    await layer.group_add("sessions", channel)
    connection = layer.connection(layer.consistent_hash("sessions"))
    joined_long_ago = time.time() - 2 * layer.group_expiry
    await connection.zadd(layer._group_key("sessions"), {channel: joined_long_ago})

    assert not await layer.group_has_members("sessions")


def test_the_redis_layer_is_shared_between_processes_so_needs_no_hub() -> None:
    from adminpanel.live.redis_layer import RedisChannelLayer

    assert not in_this_process(RedisChannelLayer(hosts=["redis://localhost:6379"]))


def test_without_channels_redis_importing_the_layer_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "channels_redis.core", None)
    monkeypatch.delitem(sys.modules, "adminpanel.live.redis_layer", raising=False)

    with pytest.raises(ImportError, match="channels-redis"):
        importlib.import_module("adminpanel.live.redis_layer")


async def test_a_receive_idle_past_the_blocking_pop_waits_on_and_gets_the_next_message(
    layer: Any,
) -> None:
    """A viewer's or a bridge's channel can stay quiet for long: channels-redis' blocking
    pop (5 s) must not outlast the client's socket timeout (redis-py's default is 5 s
    too), or the receive raises TimeoutError and the socket closes with 1011."""
    import asyncio

    channel = await layer.new_channel()
    waiting = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(12)  # two blocking pops and more, with nothing sent
    assert not waiting.done(), waiting
    await layer.send(channel, {"type": "ping", "n": 1})
    assert await asyncio.wait_for(waiting, 10) == {"type": "ping", "n": 1}
