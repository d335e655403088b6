"""The sessions consumer over the real ASGI application and channel layer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from adminpanel.live.broadcast import GROUP, MESSAGE_TYPE
from adminpanel.live.consumers import CLOSE_UNAUTHENTICATED
from adminpanel.live.layers import group_has_members
from adminpanel.live.relay import relay_for
from runboard.asgi import application
from tests.support.users import make_user

PATH = "/ws/sessions/"
ORIGIN = (b"origin", b"http://127.0.0.1")
HOST = (b"host", b"127.0.0.1")

pytestmark = pytest.mark.django_db(transaction=True)


@sync_to_async
def session_cookie() -> bytes:
    make_user("viewer", "pw-viewer-1")
    client = Client()
    assert client.login(username="viewer", password="pw-viewer-1")
    value = client.cookies[settings.SESSION_COOKIE_NAME].value
    return f"{settings.SESSION_COOKIE_NAME}={value}".encode()


@pytest.fixture
async def viewer() -> AsyncIterator[WebsocketCommunicator]:
    headers = [ORIGIN, HOST, (b"cookie", await session_cookie())]
    communicator = WebsocketCommunicator(application, PATH, headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    try:
        yield communicator
    finally:
        await communicator.disconnect()


async def test_a_logged_in_viewer_joins_and_receives_the_broadcast_html(
    viewer: WebsocketCommunicator,
) -> None:
    html = '<tr hx-swap-oob="true" id="session-1"><td>x</td></tr>'
    await get_channel_layer().group_send(GROUP, {"type": MESSAGE_TYPE, "html": html, "rows": 1})

    assert await viewer.receive_from(timeout=10) == html


async def test_every_viewer_receives_the_same_message(viewer: WebsocketCommunicator) -> None:
    headers = [ORIGIN, HOST, (b"cookie", dict(viewer.scope["headers"])[b"cookie"])]
    second = WebsocketCommunicator(application, PATH, headers=headers)
    connected, _ = await second.connect(timeout=10)
    try:
        assert connected
        await get_channel_layer().group_send(
            GROUP, {"type": MESSAGE_TYPE, "html": "<span>1</span>", "rows": 0}
        )
        assert await viewer.receive_from(timeout=10) == "<span>1</span>"
        assert await second.receive_from(timeout=10) == "<span>1</span>"
    finally:
        await second.disconnect()


async def test_what_a_viewer_sends_is_ignored(viewer: WebsocketCommunicator) -> None:
    await viewer.send_to(text_data="hello")
    # Once the consumer took the frame, it handles it before a broadcast sent after it.
    async with asyncio.timeout(10):
        while not viewer.input_queue.empty():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    sentinel = "<span>sentinel</span>"
    await get_channel_layer().group_send(GROUP, {"type": MESSAGE_TYPE, "html": sentinel, "rows": 0})

    assert await viewer.receive_from(timeout=10) == sentinel  # no answer to "hello" before it


async def test_an_anonymous_viewer_is_refused_with_4401() -> None:
    communicator = WebsocketCommunicator(application, PATH, headers=[ORIGIN, HOST])
    try:
        connected, code = await communicator.connect(timeout=10)
        assert not connected
        assert code == CLOSE_UNAUTHENTICATED
    finally:
        await communicator.disconnect()


async def test_a_foreign_origin_is_refused() -> None:
    headers = [(b"origin", b"http://evil.example"), HOST, (b"cookie", await session_cookie())]
    communicator = WebsocketCommunicator(application, PATH, headers=headers)
    try:
        connected, _ = await communicator.connect(timeout=10)
        assert not connected
    finally:
        await communicator.disconnect()


async def test_a_viewer_that_left_is_no_longer_in_the_group(
    viewer: WebsocketCommunicator,
) -> None:
    layer = get_channel_layer()
    assert await group_has_members(layer, GROUP)  # joined before the socket was accepted
    await viewer.disconnect()

    assert not await group_has_members(layer, GROUP)


async def test_a_viewer_whose_consumer_failed_leaves_the_relay_and_the_group() -> None:
    """A consumer can end without ``disconnect`` (its channel's receive raised, as when
    Redis goes away); the relay must not keep it, nor keep the group for it."""
    headers = [ORIGIN, HOST, (b"cookie", await session_cookie())]
    communicator = WebsocketCommunicator(application, PATH, headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    layer = get_channel_layer()
    relay = relay_for(layer)
    [consumer] = relay.viewers
    # No handler for this type: the consumer raises out of its loop, as on a failed receive.
    await layer.send(consumer.channel_name, {"type": "no.such.handler"})
    with pytest.raises(ValueError, match="No handler"):
        await communicator.wait(timeout=10)

    assert relay.viewers == set()
    assert not await group_has_members(layer, GROUP)
