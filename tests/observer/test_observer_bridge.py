"""The bridge in observer mode against the simulated gateway (no plugin), over loopback."""

from __future__ import annotations

from typing import Any

from gateway_bridge.connection import Bridge
from gateway_bridge.events import (
    DispatchSkipped,
    FollowupDrainFailed,
    LockAcquired,
    LockReleased,
    PhaseChanged,
    RegistryEvent,
    RunEnded,
    Snapshot,
    WaiterAdded,
    WaiterResolved,
)
from gateway_bridge.feed import EventSink
from tests.gateway_bridge.scripted import until
from tests.gateway_bridge.support import ListSink, quick_bridge_settings, running
from tests.observer.conftest import ObserverGatewayFactory, PluginlessSimGateway
from tests.support.fixtures_sim import FAST

KEY_A = "agent:main:telegram:direct:alice"
KEY_B = "agent:main:telegram:direct:bob"


def observer_bridge(gw: PluginlessSimGateway, sink: EventSink, **options: Any) -> Bridge:
    settings = quick_bridge_settings(
        **{"observer_poll_s": 0.2, "observer_min_poll_s": 0.05, **options}
    )
    return Bridge(gateway="sim-obs", url=gw.url, token=gw.token, sink=sink, **settings)


def released(sink: ListSink, key: str, run_id: str | None = None) -> list[RegistryEvent]:
    return [
        e
        for e in sink.of_kind(LockReleased, session_key=key)
        if run_id is None or getattr(e, "run_id", "") == run_id
    ]


def kinds_for(sink: ListSink, run_id: str) -> list[str]:
    return [type(e).__name__ for e in sink.events if getattr(e, "run_id", "") == run_id]


async def test_normal_turns_are_acquired_run_end_and_are_released_under_one_observer_boot(
    observer_gateway: ObserverGatewayFactory,
) -> None:
    gw = await observer_gateway(profile="2026.9", **FAST)
    sink = ListSink()
    async with running(observer_bridge(gw, sink)) as bridge:
        await until(lambda: bool(sink.snapshots()))
        run_a = gw.send_inbound(KEY_A, "hello")
        run_b = gw.send_inbound(KEY_B, "hi there")
        await until(lambda: bool(released(sink, KEY_A) and released(sink, KEY_B)))
        state = bridge.state

    first, *changes = sink.events
    assert isinstance(first, Snapshot) and first.seq == 0
    assert first.boot_id.startswith(f"observer:{gw.registry.boot_id}:")
    assert [e.seq for e in changes] == list(range(1, len(changes) + 1))
    assert {e.boot_id for e in changes} == {first.boot_id}
    for run_id in (run_a, run_b):
        kinds = [k for k in kinds_for(sink, run_id) if k != "RunActivity"]
        assert kinds == ["LockAcquired", "PhaseChanged", "RunEnded", "LockReleased"]
    assert [e.phase for e in sink.of_kind(PhaseChanged) if isinstance(e, PhaseChanged)] == [
        "running",
        "running",
    ]
    assert {e.result for e in sink.of_kind(RunEnded) if isinstance(e, RunEnded)} == {"completed"}
    assert (state.status, state.mode) == ("connected", "observer")


async def test_a_hung_turn_holds_its_lock_and_a_later_message_waits_without_timeout_on_5_28(
    observer_gateway: ObserverGatewayFactory,
) -> None:
    gw = await observer_gateway(profile="2026.5.28", waiters_in_active_run_ids=True, **FAST)
    sink = ListSink()
    async with running(observer_bridge(gw, sink)):
        await until(lambda: bool(sink.snapshots()))
        hung = gw.send_inbound(KEY_A, "please HANG now")
        waiting = gw.send_inbound(KEY_A, "are you there?")
        other = gw.send_inbound(KEY_B, "hello")
        await until(lambda: bool(sink.of_kind(WaiterAdded)) and bool(released(sink, KEY_B)))

    [waiter] = sink.of_kind(WaiterAdded)
    assert isinstance(waiter, WaiterAdded)
    assert (waiter.session_key, waiter.waiter_id, waiter.blocking_run_id) == (KEY_A, waiting, hung)
    assert waiter.timeout_ms is None
    assert not released(sink, KEY_A)
    assert [k for k in kinds_for(sink, other) if k != "RunActivity"][-1] == "LockReleased"


async def test_a_lock_held_when_the_bridge_connects_is_in_the_first_snapshot_with_its_waiter(
    observer_gateway: ObserverGatewayFactory,
) -> None:
    gw = await observer_gateway(profile="2026.9", waiters_in_active_run_ids=True, **FAST)
    hung = gw.send_inbound(KEY_A, "please HANG now")
    waiting = gw.send_inbound(KEY_A, "are you there?")
    # The model call started (2026.9 runs, waits for the global lane, then runs again).
    await until(lambda: getattr(gw.registry.session(KEY_A), "status", "") == "running")
    sink = ListSink()
    async with running(observer_bridge(gw, sink)):
        await until(lambda: bool(sink.snapshots()))

    [entry] = sink.snapshots()[0].entries
    assert (entry.session_key, entry.run_id, entry.phase) == (KEY_A, hung, "running")
    [waiter] = entry.waiters
    assert (waiter.waiter_id, waiter.timeout_ms) == (waiting, 15_000)


async def test_an_abort_ends_the_hung_run_and_the_dropped_waiting_message_is_one_skip(
    observer_gateway: ObserverGatewayFactory,
) -> None:
    gw = await observer_gateway(profile="2026.5.28", waiters_in_active_run_ids=True, **FAST)
    sink = ListSink()
    async with running(observer_bridge(gw, sink)) as bridge:
        await until(lambda: bool(sink.snapshots()))
        hung = gw.send_inbound(KEY_A, "please HANG now")
        waiting = gw.send_inbound(KEY_A, "are you there?")
        await until(lambda: bool(sink.of_kind(WaiterAdded)))
        result = await bridge.abort(KEY_A)
        await until(lambda: bool(sink.of_kind(DispatchSkipped)) and bool(released(sink, KEY_A)))
        await until(lambda: bridge.state.last_event_at is not None)

    assert set(result.run_ids) == {hung, waiting}
    [skip] = sink.of_kind(DispatchSkipped)
    assert isinstance(skip, DispatchSkipped)
    assert (skip.reason, skip.message_id, skip.blocking_run_id) == ("aborted", waiting, hung)
    [resolved] = sink.of_kind(WaiterResolved)
    assert isinstance(resolved, WaiterResolved) and resolved.outcome == "aborted"
    [ended] = sink.of_kind(RunEnded, run_id=hung)
    assert isinstance(ended, RunEnded) and ended.result == "aborted"


async def test_a_followup_drain_failure_in_the_gateway_log_is_reported_once(
    observer_gateway: ObserverGatewayFactory,
) -> None:
    gw = await observer_gateway(profile="2026.5.3", **FAST)
    sink = ListSink()
    async with running(observer_bridge(gw, sink)):
        await until(lambda: bool(sink.snapshots()))
        gw.send_inbound(KEY_A, "hello")
        await until(lambda: bool(released(sink, KEY_A)))
        gw.send_inbound(KEY_A, "again")
        await until(lambda: bool(sink.of_kind(FollowupDrainFailed)))

    [failed] = sink.of_kind(FollowupDrainFailed)
    assert isinstance(failed, FollowupDrainFailed)
    assert (failed.session_key, failed.error) == (KEY_A, "ReplyRunAlreadyActiveError")
    assert not sink.of_kind(DispatchSkipped)


async def test_a_forced_settle_in_the_gateway_log_names_how_the_leaked_lock_went(
    observer_gateway: ObserverGatewayFactory,
) -> None:
    gw = await observer_gateway(
        profile="2026.9", leak_after_complete_rate=1.0, terminal_settle_s=0.3, **FAST
    )
    sink = ListSink()
    async with running(observer_bridge(gw, sink)):
        await until(lambda: bool(sink.snapshots()))
        run_id = gw.send_inbound(KEY_A, "hello")
        await until(lambda: bool(sink.of_kind(LockReleased, how="forced_settle")))

    hows = [e.how for e in released(sink, KEY_A, run_id) if isinstance(e, LockReleased)]
    assert hows[-1] == "forced_settle"


async def test_a_reconnect_to_the_same_gateway_process_continues_the_numbering(
    observer_gateway: ObserverGatewayFactory,
) -> None:
    gw = await observer_gateway(profile="2026.9", **FAST)
    sink = ListSink()
    async with running(observer_bridge(gw, sink)) as bridge:
        await until(lambda: bool(sink.snapshots()))
        hung = gw.send_inbound(KEY_A, "please HANG now")
        await until(lambda: bool(sink.of_kind(PhaseChanged, run_id=hung)))
        gw.drop_connections()
        await until(lambda: len(sink.snapshots()) == 2)
        state = bridge.state

    first, second = sink.snapshots()
    assert second.boot_id == first.boot_id
    assert second.seq > max(e.seq for e in sink.events[: sink.events.index(second)])
    [entry] = second.entries
    assert entry.run_id == hung
    assert state.reconnects == 1


async def test_a_gateway_restart_starts_a_new_observer_boot_without_the_old_lock(
    observer_gateway: ObserverGatewayFactory,
) -> None:
    gw = await observer_gateway(profile="2026.9", **FAST)
    sink = ListSink()
    async with running(observer_bridge(gw, sink)) as bridge:
        await until(lambda: bool(sink.snapshots()))
        gw.send_inbound(KEY_A, "please HANG now")
        await until(lambda: bool(sink.of_kind(LockAcquired, session_key=KEY_A)))
        await gw.kill()
        await until(lambda: bridge.state.status != "connected")
        restarted = await observer_gateway(profile="2026.9", port=gw.port, **FAST)
        await until(lambda: len(sink.snapshots()) == 2)
        restarted.send_inbound(KEY_B, "hello again")
        await until(lambda: bool(released(sink, KEY_B)))

    old, new = sink.snapshots()
    assert new.boot_id.startswith(f"observer:{restarted.registry.boot_id}:")
    assert new.boot_id != old.boot_id and new.seq == 0
    assert new.entries == ()


async def test_a_message_waiting_behind_a_hung_turn_is_not_seen_as_on_real_releases(
    observer_gateway: ObserverGatewayFactory,
) -> None:
    gw = await observer_gateway(profile="2026.5.28", **FAST)
    sink = ListSink()
    async with running(observer_bridge(gw, sink)):
        await until(lambda: bool(sink.snapshots()))
        hung = gw.send_inbound(KEY_A, "please HANG now")
        gw.send_inbound(KEY_A, "are you there?")
        other = gw.send_inbound(KEY_B, "hello")
        await until(lambda: bool(sink.of_kind(PhaseChanged, run_id=hung)))
        await until(lambda: bool(released(sink, KEY_B, other)))

    # The hung run holds the lock; the waiting message is in no activeRunIds, so no waiter.
    assert [getattr(e, "run_id", "") for e in sink.of_kind(LockAcquired, session_key=KEY_A)] == [
        hung
    ]
    assert sink.of_kind(WaiterAdded) == []
