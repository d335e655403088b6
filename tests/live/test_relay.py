"""The relay: each push is received once per process and written to every local viewer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from adminpanel.live import group_member
from adminpanel.live.broadcast import GROUP, MESSAGE_TYPE
from adminpanel.live.layers import group_has_members
from adminpanel.live.memory_layer import InProcessChannelLayer
from adminpanel.live.relay import Relay, relay_for
from tests.live.conftest import RedisOnSocket


class Viewer:
    """Records what the relay wrote to it; ``fail`` makes its socket refuse."""

    def __init__(self, *, fail: bool = False) -> None:
        self.received: asyncio.Queue[str] = asyncio.Queue()
        self.fail = fail

    async def push(self, html: str) -> None:
        if self.fail:
            raise ConnectionResetError("the viewer's socket is gone")
        self.received.put_nowait(html)

    async def next(self) -> str:
        return await asyncio.wait_for(self.received.get(), 10)


def push(html: str) -> dict[str, Any]:
    return {"type": MESSAGE_TYPE, "html": html, "rows": 1}


async def redis_members(layer: Any) -> int:
    connection = layer.connection(layer.consistent_hash(GROUP))
    return int(await connection.zcard(layer._group_key(GROUP)))


async def test_viewers_of_one_process_are_one_member_and_each_gets_every_push_once() -> None:
    layer = InProcessChannelLayer()
    relay = Relay(layer)
    viewers = [Viewer() for _ in range(3)]
    for viewer in viewers:
        await relay.join(viewer)

    assert len(layer.groups[GROUP]) == 1
    await layer.group_send(GROUP, push("<tr id='a'>"))
    await layer.group_send(GROUP, push("<tr id='b'>"))
    for viewer in viewers:
        assert [await viewer.next(), await viewer.next()] == ["<tr id='a'>", "<tr id='b'>"]
        assert viewer.received.empty()
    assert relay.pushes == 2


async def test_after_the_last_viewer_left_the_group_is_empty_and_the_relay_stopped() -> None:
    layer = InProcessChannelLayer()
    relay = Relay(layer)
    first, second = Viewer(), Viewer()
    await relay.join(first)
    await relay.join(second)
    await relay.leave(first)
    assert await group_has_members(layer, GROUP)  # the second still watches

    await relay.leave(second)

    assert not await group_has_members(layer, GROUP)
    assert not relay.running
    await relay.join(first)  # and it starts again for the next viewer
    await layer.group_send(GROUP, push("<tr>"))
    assert await first.next() == "<tr>"
    await relay.leave(first)


async def test_the_socket_is_accepted_once_the_relay_is_in_the_group() -> None:
    """A browser resyncs when its socket opens: every push after that must reach it."""
    layer = InProcessChannelLayer()
    relay = Relay(layer)
    viewer = Viewer()
    in_group_at_accept: list[bool] = []

    async def accept() -> None:
        in_group_at_accept.append(await group_has_members(layer, GROUP))
        assert viewer not in relay.viewers  # nothing is written before the accept

    await relay.join(viewer, accept=accept)

    assert in_group_at_accept == [True]
    assert viewer in relay.viewers
    await relay.leave(viewer)


async def test_a_failed_accept_leaves_no_relay_in_the_group() -> None:
    layer = InProcessChannelLayer()
    relay = Relay(layer)

    async def accept() -> None:
        raise ConnectionResetError("the browser went away")

    with pytest.raises(ConnectionResetError):
        await relay.join(Viewer(), accept=accept)

    assert relay.viewers == set()
    assert not relay.running
    assert not await group_has_members(layer, GROUP)


async def test_a_viewer_whose_socket_fails_does_not_keep_the_push_from_the_others() -> None:
    layer = InProcessChannelLayer()
    relay = Relay(layer)
    broken, fine = Viewer(fail=True), Viewer()
    await relay.join(broken)
    await relay.join(fine)

    await layer.group_send(GROUP, push("<tr>"))

    assert await fine.next() == "<tr>"
    await relay.leave(broken)
    await relay.leave(fine)


async def test_messages_of_other_types_are_not_written_to_viewers() -> None:
    layer = InProcessChannelLayer()
    relay = Relay(layer)
    viewer = Viewer()
    await relay.join(viewer)

    await layer.group_send(GROUP, {"type": "something.else", "html": "<script>"})
    await layer.group_send(GROUP, push("<tr>"))

    assert await viewer.next() == "<tr>"  # the first message was passed over
    await relay.leave(viewer)


async def test_one_relay_per_loop_and_layer() -> None:
    layer, other = InProcessChannelLayer(), InProcessChannelLayer()

    assert relay_for(layer) is relay_for(layer)
    assert relay_for(other) is not relay_for(layer)


async def test_over_redis_a_hundred_viewers_are_one_member_and_all_get_the_push(
    layer: Any,
) -> None:
    relay = Relay(layer)
    viewers = [Viewer() for _ in range(100)]
    for viewer in viewers:
        await relay.join(viewer)

    assert await redis_members(layer) == 1
    await layer.group_send(GROUP, push("<tr>"))
    assert [await viewer.next() for viewer in viewers] == ["<tr>"] * 100
    for viewer in viewers:
        await relay.leave(viewer)
    assert await redis_members(layer) == 0


async def test_over_redis_the_relay_receives_while_the_consumers_wait_on_their_own_channels(
    layer: Any,
) -> None:
    """Each consumer still receives on its own channel; whichever receive holds
    channels-redis' lock pops for the whole process, the relay's channel included."""
    consumers = [asyncio.create_task(layer.receive(await layer.new_channel())) for _ in range(3)]
    await asyncio.sleep(0.2)  # one of them holds the lock, blocked in Redis
    relay = Relay(layer)
    viewer = Viewer()
    await relay.join(viewer)
    try:
        await layer.group_send(GROUP, push("<tr>"))
        # Well within the blocking pop's 5 s: a relay whose pop waits its turn takes longer.
        assert await asyncio.wait_for(viewer.received.get(), 3) == "<tr>"
    finally:
        await relay.leave(viewer)
        for consumer in consumers:
            consumer.cancel()


async def test_after_redis_restarted_the_relay_joins_again_and_pushes_reach_viewers(
    layer: Any, redis_server: RedisOnSocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_member, "RETRY_AFTER_S", 0.1)
    relay = Relay(layer)
    viewer = Viewer()
    await relay.join(viewer)
    await asyncio.sleep(0.2)  # the relay's receive is blocked in Redis

    await asyncio.to_thread(redis_server.restart)  # the new Redis knows no group

    async with asyncio.timeout(20):
        while not await group_has_members(layer, GROUP):  # noqa: ASYNC110 (state in Redis)
            await asyncio.sleep(0.05)
    await layer.group_send(GROUP, push("<tr>"))
    assert await viewer.next() == "<tr>"
    await relay.leave(viewer)
