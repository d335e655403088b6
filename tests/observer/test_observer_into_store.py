"""Observer mode end to end: pluginless simulated gateway → Bridge → the real Ingestor."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from asgiref.sync import sync_to_async

from adminpanel import detect
from adminpanel.ingest import Ingestor
from adminpanel.models import DispatchSkip, Flag, Session, TimelineEvent, Waiter
from gateway_bridge.events import (
    DispatchSkipped,
    LockAcquired,
    PhaseChanged,
    RegistryEvent,
    WaiterAdded,
)
from tests.gateway_bridge.scripted import until
from tests.gateway_bridge.support import running
from tests.observer.conftest import ObserverGatewayFactory
from tests.observer.test_observer_bridge import FAST, KEY_A, KEY_B, observer_bridge

pytestmark = pytest.mark.django_db(transaction=True)


class StoreSink:
    """The store's sink as the supervisor wires it, keeping what it was given for the test."""

    def __init__(self, thresholds: detect.Thresholds | None = None) -> None:
        self.ingestor = Ingestor(thresholds=thresholds)
        self.events: list[RegistryEvent] = []
        self._apply = sync_to_async(self.ingestor.apply, thread_sensitive=True)

    async def __call__(self, events: Sequence[RegistryEvent]) -> bool:
        self.events.extend(events)
        return (await self._apply(events)).needs_snapshot

    def saw(self, kind: type[RegistryEvent], **fields: object) -> bool:
        return any(
            isinstance(e, kind) and all(getattr(e, k) == v for k, v in fields.items())
            for e in self.events
        )


async def store_shows(key: str, **fields: object) -> Session:
    async with asyncio.timeout(5):
        while True:
            row = await Session.objects.filter(session_key=key).afirst()
            if row is not None and all(getattr(row, k) == v for k, v in fields.items()):
                return row
            await asyncio.sleep(0.02)


async def test_a_hung_turn_is_a_held_lock_with_an_unbounded_waiter_and_is_flagged(
    observer_gateway: ObserverGatewayFactory,
) -> None:
    gw = await observer_gateway(profile="2026.5.28", waiters_in_active_run_ids=True, **FAST)
    sink = StoreSink(detect.Thresholds(stuck_after_s=0.5, waiter_unbounded_after_s=0.5))
    async with running(observer_bridge(gw, sink)):
        await until(lambda: bool(sink.events))
        hung = gw.send_inbound(KEY_A, "please HANG now")
        gw.send_inbound(KEY_A, "are you there?")
        gw.send_inbound(KEY_B, "hello")
        await until(lambda: sink.saw(LockAcquired, session_key=KEY_B))
        await until(lambda: sink.saw(WaiterAdded))
        await asyncio.sleep(0.6)
        await sync_to_async(sink.ingestor.tick)()
        held = await store_shows(KEY_A, locked=True, run_id=hung, phase="running", waiter_count=1)
        other = await store_shows(KEY_B, locked=False)
        flags = {f.code async for f in Flag.objects.filter(session=held, cleared_at=None)}
        other_flags = await Flag.objects.filter(session=other, cleared_at=None).acount()

    assert {"no_progress", "unbounded_waiter"} <= flags
    assert other_flags == 0
    waiter = await Waiter.objects.aget(session=held)
    assert (waiter.blocking_run_id, waiter.timeout_ms) == (hung, None)


async def test_an_abort_releases_the_lock_and_the_lost_message_lands_in_the_skip_ledger(
    observer_gateway: ObserverGatewayFactory,
) -> None:
    gw = await observer_gateway(profile="2026.5.28", waiters_in_active_run_ids=True, **FAST)
    sink = StoreSink()
    async with running(observer_bridge(gw, sink)) as bridge:
        await until(lambda: bool(sink.events))
        hung = gw.send_inbound(KEY_A, "please HANG now")
        waiting = gw.send_inbound(KEY_A, "are you there?")
        await until(lambda: sink.saw(WaiterAdded))
        await bridge.abort(KEY_A)
        await until(lambda: sink.saw(DispatchSkipped, session_key=KEY_A))
        session = await store_shows(KEY_A, locked=False, waiter_count=0, store_status="killed")

    skip = await DispatchSkip.objects.aget(session=session)
    assert (skip.reason, skip.message_id, skip.blocking_run_id) == ("aborted", waiting, hung)


async def test_a_dropped_connection_leaves_no_phantom_restart_in_the_store(
    observer_gateway: ObserverGatewayFactory,
) -> None:
    gw = await observer_gateway(profile="2026.9", **FAST)
    sink = StoreSink()
    async with running(observer_bridge(gw, sink)) as bridge:
        await until(lambda: bool(sink.events))
        hung = gw.send_inbound(KEY_A, "please HANG now")
        await until(lambda: sink.saw(PhaseChanged, run_id=hung))
        gw.drop_connections()
        await until(lambda: bridge.state.reconnects == 1 and bridge.state.status == "connected")
        await until(lambda: sum(type(e).__name__ == "Snapshot" for e in sink.events) == 2)
        session = await store_shows(KEY_A, locked=True, run_id=hung)

    kinds = [t.kind async for t in TimelineEvent.objects.filter(session=session)]
    assert "run_lost_at_restart" not in kinds
    assert not [k for k in kinds if k.startswith("lock_reconciled")]
