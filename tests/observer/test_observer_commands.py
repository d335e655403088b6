"""Commands in observer mode: force-clear falls back to chat.abort, requeue to chat.send."""

from __future__ import annotations

import pytest

from gateway_bridge.events import LockAcquired, LockReleased, PhaseChanged, WaiterAdded
from gateway_bridge.observer.mode import ABORT_FALLBACK_DETAIL
from gateway_bridge.results import ForceClearResult
from tests.gateway_bridge.scripted import until
from tests.gateway_bridge.support import ListSink, running
from tests.observer.conftest import ObserverGatewayFactory
from tests.observer.test_observer_bridge import FAST, KEY_A, KEY_B, observer_bridge


def user_messages(history: list[dict[str, object]], key: str) -> list[dict[str, object]]:
    return [m for m in history if m.get("idempotencyKey") == f"{key}:user"]


async def test_force_clear_aborts_the_expected_run_says_so_and_the_waiter_is_answered(
    observer_gateway: ObserverGatewayFactory,
) -> None:
    gw = await observer_gateway(profile="2026.9", waiters_in_active_run_ids=True, **FAST)
    sink = ListSink()
    async with running(observer_bridge(gw, sink)) as bridge:
        await until(lambda: bool(sink.snapshots()))
        hung = gw.send_inbound(KEY_A, "please HANG now")
        waiting = gw.send_inbound(KEY_A, "are you there?")
        await until(lambda: bool(sink.of_kind(WaiterAdded)))
        result = await bridge.force_clear(KEY_A, hung, "operator: stuck")
        await until(lambda: bool(sink.of_kind(LockReleased, run_id=waiting)))

    assert result == ForceClearResult(
        cleared=True,
        session_key=KEY_A,
        run_id=hung,
        reason="",
        current=None,
        phase="running",
        fallback="chat.abort",
        detail=ABORT_FALLBACK_DETAIL,
    )
    acquired = sink.of_kind(LockAcquired, session_key=KEY_A)
    assert [getattr(e, "run_id", "") for e in acquired] == [hung, waiting]
    [released] = sink.of_kind(LockReleased, run_id=hung)
    assert isinstance(released, LockReleased)
    assert (released.how, released.detail) == ("force_clear", "chat.abort: operator: stuck")


async def test_force_clear_refuses_a_run_the_gateway_no_longer_reports_and_an_idle_session(
    observer_gateway: ObserverGatewayFactory,
) -> None:
    gw = await observer_gateway(profile="2026.9", **FAST)
    sink = ListSink()
    async with running(observer_bridge(gw, sink)) as bridge:
        await until(lambda: bool(sink.snapshots()))
        hung = gw.send_inbound(KEY_A, "please HANG now")
        await until(lambda: bool(sink.of_kind(PhaseChanged, run_id=hung)))
        stale = await bridge.force_clear(KEY_A, "run-the-operator-saw-earlier", "stuck")
        idle = await bridge.force_clear(KEY_B, "any-run", "stuck")
        still_held = gw.registry.entry(KEY_A)

    assert (stale.cleared, stale.reason, stale.fallback) == (False, "owner_changed", "chat.abort")
    assert stale.current is not None and stale.current.run_id == hung
    assert (idle.cleared, idle.reason, idle.current) == (False, "not_locked", None)
    assert still_held is not None and still_held.run_id == hung


async def test_requeue_resends_with_chat_send_once_per_idempotency_key(
    observer_gateway: ObserverGatewayFactory,
) -> None:
    gw = await observer_gateway(profile="2026.9", **FAST)
    sink = ListSink()
    async with running(observer_bridge(gw, sink)) as bridge:
        await until(lambda: bool(sink.snapshots()))
        first = await bridge.requeue(KEY_A, [("lost message", "requeue-1")])
        again = await bridge.requeue(KEY_A, [("lost message", "requeue-1"), ("other", "rq-2")])
        await until(lambda: len(sink.of_kind(LockReleased, session_key=KEY_A)) == 2)

    assert [(r.idempotency_key, r.run_id, r.status, r.fallback) for r in first] == [
        ("requeue-1", "requeue-1", "started", "chat.send")
    ]
    assert [(r.idempotency_key, r.status) for r in again] == [
        ("requeue-1", "duplicate"),
        ("rq-2", "started"),
    ]
    session = gw.registry.session(KEY_A)
    assert session is not None
    assert len(user_messages(session.history, "requeue-1")) == 1
    assert len(user_messages(session.history, "rq-2")) == 1


async def test_commands_need_a_connection_in_observer_mode_too(
    observer_gateway: ObserverGatewayFactory,
) -> None:
    from gateway_bridge.errors import GatewayUnavailable

    gw = await observer_gateway(profile="2026.9", **FAST)
    bridge = observer_bridge(gw, ListSink())

    with pytest.raises(GatewayUnavailable):
        await bridge.force_clear(KEY_A, "run-1", "stuck")
    with pytest.raises(GatewayUnavailable):
        await bridge.requeue(KEY_A, [("text", "key-1")])
