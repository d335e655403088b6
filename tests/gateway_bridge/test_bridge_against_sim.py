"""The bridge against the simulated gateway over real loopback sockets."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from gateway_bridge.connection import Bridge
from gateway_bridge.errors import GatewayUnavailable
from gateway_bridge.events import (
    GatewayStopping,
    LockAcquired,
    LockReleased,
    PhaseChanged,
    RegistryEvent,
    Snapshot,
    WaiterAdded,
)
from gateway_bridge.results import ForceClearResult
from simgateway.server import SimGateway
from tests.gateway_bridge.scripted import until
from tests.gateway_bridge.support import ListSink, StateLog, quick_bridge_settings, running
from tests.support.fixtures_sim import FAST, SimGatewayFactory

KEY_A = "agent:main:telegram:direct:alice"
KEY_B = "agent:main:telegram:direct:bob"


def bridge_for(gw: SimGateway, sink: ListSink, **options: Any) -> Bridge:
    settings = quick_bridge_settings(**options)
    return Bridge(gateway="sim", url=gw.url, token="sim-token", sink=sink, **settings)


def released(sink: ListSink, key: str) -> list[RegistryEvent]:
    return sink.of_kind(LockReleased, session_key=key)


def held_run_id(sink: ListSink, key: str) -> str:
    [acquired] = sink.of_kind(LockAcquired, session_key=key)
    assert isinstance(acquired, LockAcquired)
    return acquired.run_id


async def test_the_bridge_delivers_a_snapshot_first_then_every_change_in_seq_order(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.9", **FAST)
    sink = ListSink()
    async with running(bridge_for(gw, sink)) as bridge:
        await until(lambda: bool(sink.snapshots()))
        gw.send_inbound(KEY_A, "hello")
        gw.send_inbound(KEY_B, "hi there")
        await until(lambda: bool(released(sink, KEY_A) and released(sink, KEY_B)))
        state = bridge.state

    first, *changes = sink.events
    assert isinstance(first, Snapshot)
    assert first.boot_id == gw.registry.boot_id
    assert [e.seq for e in changes] == list(range(first.seq + 1, first.seq + 1 + len(changes)))
    assert {e.boot_id for e in changes} == {first.boot_id}
    assert (state.status, state.mode, state.boot_id) == ("connected", "plugin", first.boot_id)
    assert state.last_event_at is not None


async def test_a_lock_held_when_the_bridge_connects_is_in_the_first_snapshot(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.5.28", **FAST)
    run_id = gw.send_inbound(KEY_A, "please HANG now")
    gw.send_inbound(KEY_A, "are you there?")
    sink = ListSink()
    async with running(bridge_for(gw, sink)):
        await until(lambda: bool(sink.snapshots()))

    [entry] = sink.snapshots()[0].entries
    assert (entry.session_key, entry.run_id) == (KEY_A, run_id)
    [waiter] = entry.waiters
    assert waiter.timeout_ms is None  # 2026.5.28 waits forever
    # A 2026.5.x registry waiter carries no message: named by its waiter id, no text.
    assert (waiter.message_id, waiter.message_text) == (waiter.waiter_id, "")


async def test_the_bridge_reconnects_by_itself_after_a_kill_and_resyncs_from_the_new_boot(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.9", **FAST)
    sink = ListSink()
    states = StateLog()
    async with running(bridge_for(gw, sink, on_state=states)) as bridge:
        await until(lambda: bool(sink.snapshots()))
        gw.send_inbound(KEY_A, "please HANG")
        await until(lambda: bool(sink.of_kind(LockAcquired, session_key=KEY_A)))

        await gw.kill()
        await until(lambda: bridge.state.status != "connected")
        restarted = await sim_gateway(profile="2026.9", port=gw.port, **FAST)
        await until(lambda: len(sink.snapshots()) == 2)
        restarted.send_inbound(KEY_B, "hello again")
        await until(lambda: bool(released(sink, KEY_B)))
        state = bridge.state

    old_boot, new_boot = (s.boot_id for s in sink.snapshots())
    assert old_boot == gw.registry.boot_id
    assert new_boot == restarted.registry.boot_id != old_boot
    assert sink.snapshots()[1].entries == ()  # the hung lock died with the old process
    assert (state.status, state.boot_id, state.reconnects) == ("connected", new_boot, 1)
    assert "disconnected" in [s.status for s in states.states]
    assert any(s.last_error for s in states.states)


async def test_a_graceful_gateway_stop_reaches_the_sink_before_the_bridge_reconnects(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.9", **FAST)
    sink = ListSink()
    async with running(bridge_for(gw, sink)) as bridge:
        await until(lambda: bool(sink.snapshots()))
        await gw.stop(restart_expected_ms=500)
        await until(lambda: bool(sink.of_kind(GatewayStopping)))
        await until(lambda: bridge.state.status != "connected")

    [stopping] = sink.of_kind(GatewayStopping)
    assert isinstance(stopping, GatewayStopping)
    assert stopping.restart_expected_ms == 500


async def test_force_clear_clears_the_run_the_operator_saw_and_waiters_are_admitted(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.5.28", **FAST)
    sink = ListSink()
    async with running(bridge_for(gw, sink)) as bridge:
        await until(lambda: bool(sink.snapshots()))
        gw.send_inbound(KEY_A, "please HANG")
        await until(lambda: bool(sink.of_kind(PhaseChanged, session_key=KEY_A, phase="running")))
        gw.send_inbound(KEY_A, "second message")
        await until(lambda: bool(sink.of_kind(WaiterAdded, session_key=KEY_A)))
        run_id = held_run_id(sink, KEY_A)

        result = await bridge.force_clear(KEY_A, run_id, "operator: stuck for an hour")
        await until(lambda: bool(released(sink, KEY_A)))

    assert result.cleared is True
    assert result.run_id == run_id
    [release, *_] = released(sink, KEY_A)
    assert isinstance(release, LockReleased)
    assert (release.run_id, release.how) == (run_id, "force_clear")
    assert release.detail == "operator: stuck for an hour"


async def test_force_clear_refuses_a_stale_expectation_and_shows_the_current_owner(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.5.28", **FAST)
    sink = ListSink()
    async with running(bridge_for(gw, sink)) as bridge:
        await until(lambda: bool(sink.snapshots()))
        current_run = gw.send_inbound(KEY_A, "please HANG")
        await until(lambda: bool(sink.of_kind(LockAcquired, session_key=KEY_A)))

        stale = await bridge.force_clear(KEY_A, "run-the-operator-saw-earlier", "stuck")
        not_locked = await bridge.force_clear(KEY_B, "any-run", "stuck")
        snapshot = await bridge.snapshot()

    assert stale == ForceClearResult(
        cleared=False,
        session_key=KEY_A,
        run_id="",
        reason="owner_changed",
        current=stale.current,
    )
    assert stale.current is not None and stale.current.run_id == current_run
    assert (not_locked.cleared, not_locked.reason, not_locked.current) == (
        False,
        "not_locked",
        None,
    )
    assert [e.run_id for e in snapshot.entries] == [current_run]  # still held


async def test_requeue_dispatches_messages_once_per_idempotency_key(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.9", **FAST)
    sink = ListSink()
    async with running(bridge_for(gw, sink)) as bridge:
        await until(lambda: bool(sink.snapshots()))
        first = await bridge.requeue(KEY_A, [("lost message", "requeue-1")])
        again = await bridge.requeue(KEY_A, [("lost message", "requeue-1"), ("other", "rq-2")])

    assert [(r.idempotency_key, r.status) for r in first] == [("requeue-1", "started")]
    assert [(r.idempotency_key, r.status) for r in again] == [
        ("requeue-1", "duplicate"),
        ("rq-2", "started"),
    ]


async def test_abort_goes_through_chat_abort_and_names_the_aborted_runs(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.9", **FAST)
    sink = ListSink()
    async with running(bridge_for(gw, sink)) as bridge:
        await until(lambda: bool(sink.snapshots()))
        run_id = gw.send_inbound(KEY_A, "please HANG")
        await until(lambda: bool(sink.of_kind(LockAcquired, session_key=KEY_A)))

        result = await bridge.abort(KEY_A)

    assert result.aborted is True
    assert run_id in result.run_ids


async def test_commands_fail_at_once_when_the_bridge_is_not_connected(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.9")
    bridge = bridge_for(gw, ListSink())

    with pytest.raises(GatewayUnavailable):
        await bridge.snapshot()
    with pytest.raises(GatewayUnavailable):
        await bridge.force_clear(KEY_A, "run-1", "stuck")
    with pytest.raises(GatewayUnavailable):
        await bridge.requeue(KEY_A, [("text", "key-1")])
    with pytest.raises(GatewayUnavailable):
        await bridge.abort(KEY_A)


async def test_a_gap_reported_by_the_sink_brings_a_fresh_snapshot(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.9", **FAST)
    # The first delivery is the snapshot; the sink then says the first live batch left a gap.
    sink = ListSink(gaps=[False, True])
    async with running(bridge_for(gw, sink)):
        await until(lambda: bool(sink.snapshots()))
        gw.send_inbound(KEY_A, "hello")
        await until(lambda: len(sink.snapshots()) == 2)
        gw.send_inbound(KEY_B, "hello")
        await until(lambda: bool(released(sink, KEY_B)))

    resync = sink.snapshots()[1]
    after = sink.events[sink.events.index(resync) + 1 :]
    assert after and all(e.seq > resync.seq for e in after)


async def test_stop_flushes_buffered_changes_to_the_sink(sim_gateway: SimGatewayFactory) -> None:
    gw = await sim_gateway(profile="2026.9", **FAST)
    sink = ListSink()
    # A batch that would wait a minute: only stop() can flush it in time.
    bridge = bridge_for(gw, sink, batch_wait_s=60.0)
    async with running(bridge):
        await until(lambda: bool(sink.snapshots()))
        gw.send_inbound(KEY_A, "please HANG")
        # The answer comes after the change's event on the same socket: it is buffered now.
        await bridge.snapshot()
        delivered_before_stop = len(sink.events)
    assert delivered_before_stop == 1
    assert sink.of_kind(LockAcquired, session_key=KEY_A)
    assert bridge.state.status == "stopped"


async def test_garbage_and_duplicates_from_the_gateway_are_logged_and_the_stream_goes_on(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.9", garbage_rate=0.5, duplicate_rate=0.3, **FAST)
    sink = ListSink()
    with capture_logs() as logs:
        async with running(bridge_for(gw, sink)) as bridge:
            await until(lambda: bool(sink.snapshots()))
            for n in range(5):
                gw.send_inbound(f"{KEY_A}-{n}", "hello")
            await until(lambda: all(released(sink, f"{KEY_A}-{n}") for n in range(5)))
            state = bridge.state

    assert state.status == "connected"
    assert any(e["event"] == "frame_rejected" for e in logs)
    # Duplicates are passed on as they came: the store is idempotent on (boot, seq).
    seqs = [e.seq for e in sink.events[1:]]
    assert set(seqs) == set(range(sink.snapshots()[0].seq + 1, max(seqs) + 1))
