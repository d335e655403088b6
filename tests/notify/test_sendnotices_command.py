"""``manage.py sendnotices --once`` and the dispatcher loop the bridge supervisor runs."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.utils import timezone

from adminpanel.models import Gateway
from adminpanel.notify import dispatcher
from adminpanel.notify.models import Delivery
from tests.notify.receivers import HttpReceiver
from tests.notify.support import make_channel, make_flag, make_session, raise_flag

pytestmark = pytest.mark.django_db(transaction=True)


def test_sendnotices_once_sends_what_is_due(gateway: Gateway, receiver: HttpReceiver) -> None:
    make_channel("webhook", receiver.url)
    raise_flag(make_flag(make_session(gateway), at=timezone.now()), at=timezone.now())
    call_command("sendnotices", "--once")
    assert len(receiver.bodies) == 1
    assert Delivery.objects.get().status == "sent"


async def test_the_dispatcher_loop_sends_a_queued_notice_and_stops_when_told(
    gateway: Gateway, receiver: HttpReceiver
) -> None:
    await sync_to_async(make_channel)("webhook", receiver.url)
    session = await sync_to_async(make_session)(gateway)
    flag = await sync_to_async(make_flag)(session, at=timezone.now())
    await sync_to_async(raise_flag)(flag, at=timezone.now())
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop, tick_s=0.05))
    for _ in range(100):
        if receiver.bodies:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert [b["event"] for b in receiver.bodies] == ["flag_raised"]
