"""Contract scenarios: the same five stories against the simulated gateway and real OpenClaw.

Each test runs once per ``target`` (tests/contract/targets.py): the simulated
gateway (its 2026.9 and 2026.5.28 profiles), and openclaw@2026.9.6 and
openclaw@2026.5.28 (marked ``openclaw``; select with ``-m openclaw`` or leave
out with ``-m "not openclaw"``), each in plugin mode (Runboard's companion
plugin installed) and in observer mode (a stock gateway; the simulated one
with ``plugin=False``). Where observer mode cannot see something, the scenario
says so next to the expectation it leaves out, and
``gateway_bridge.observer.OBSERVER_BLIND_SPOTS`` lists it; what observer mode
can see is checked as in plugin mode. No check depends on the gateway being
simulated: the simulated gateway was made to behave as the real releases do
(docs/protocol.md §3 says how, and what still differs). Nothing is replaced by
a double: a real gateway on a loopback port, the real bridge, the supervisor
and ingestor writing the test database. Users talk to the gateway over a
second operator connection with ``chat.send``, as any client would.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.contract import support as s
from tests.contract.targets import Target

pytestmark = pytest.mark.django_db(transaction=True)

HANG = "please HANG"


async def hung_session(target: Target, client: s.GatewayClient, scenario: str) -> tuple[str, str]:
    """A session whose turn reached the model and will never get an answer: (key, run id)."""
    key = s.session_key(scenario)
    text = s.marked(HANG)
    await s.send(client, key, text)
    await s.eventually(s.locked_by(key), target.turn_timeout_s, f"{key} locked")
    if target.model is not None:
        model = target.model

        async def reached_model() -> bool:
            return any(text in t for t in model.texts())

        await s.eventually(reached_model, target.turn_timeout_s, f"{text!r} reached the model")
    row = await s.session_row(key)
    assert row is not None
    return key, row.run_id


async def test_normal_turns_go_through_their_phases_in_order_and_release_the_lock_unflagged(
    target: Target,
) -> None:
    key = s.session_key("normal")
    async with s.mirrored(target), s.chat_client(target) as client:
        first = s.marked("hello")
        await s.send(client, key, first)
        await s.eventually(s.run_released(key), target.turn_timeout_s, "first turn released")
        second = s.marked("and again")
        await s.send(client, key, second)

        async def two_released() -> bool:
            return sum(r.released_at is not None for r in await s.runs_of(key)) >= 2

        await s.eventually(two_released, target.turn_timeout_s, "second turn released")

        async def released_now() -> bool:
            runs = await s.runs_of(key)
            return await s.unlocked(key)() and all(r.released_at is not None for r in runs)

        async def all_released() -> bool:
            # 2026.5.28 runs a short empty operation right after a turn (its follow-up
            # drain): released only if it still holds a moment later.
            if not await released_now():
                return False
            await asyncio.sleep(1.0)
            return await released_now()

        await s.eventually(all_released, target.turn_timeout_s, "every run released")
        messages = await s.history(client, key)

    timeline = await s.timeline_rows(key)
    for run in await s.runs_of(key):
        kinds = await s.timeline_kinds(key, run.run_id)
        assert kinds[0] == "lock_acquired", timeline
        assert kinds[-2:] == ["run_ended", "lock_released"], timeline
        assert set(kinds[1:-2]) <= {"phase_changed", "run_activity"}, timeline
        assert run.result == "completed" and run.release_how == "normal"
    row = await s.session_row(key)
    assert row is not None and not row.locked
    assert await s.flags_of(key, active_only=False) == []
    assert s.answered(messages, first) and s.answered(messages, second)


async def test_a_hung_turn_is_flagged_within_its_threshold_and_other_users_go_on_unflagged(
    target: Target,
) -> None:
    async with s.mirrored(target), s.chat_client(target) as client:
        key, run_id = await hung_session(target, client, "hung")
        later = s.marked("are you there?")
        await s.send(client, key, later)
        other = s.session_key("other")
        await s.send(client, other, s.marked("hello from someone else"))
        if not target.observer:
            await s.eventually(s.waiting(key), target.turn_timeout_s, "the later message waits")
        # else: observer mode: no gateway lists a waiting message in activeRunIds
        # (OBSERVER_BLIND_SPOTS), so nothing shows it waiting.
        bound = target.stuck_after_s + target.turn_timeout_s
        await s.eventually(s.flagged(key, "no_progress"), bound, f"{key} flagged no_progress")
        await s.eventually(s.run_released(other), target.turn_timeout_s, "the other turn ended")

    (flag,) = [f for f in await s.flags_of(key) if f.code == "no_progress"]
    # Raised once the threshold passed, and dated from that moment (how soon after it is
    # measured by bench/flag_latency, not asserted here).
    assert flag.raised_at >= flag.since
    row = await s.session_row(key)
    assert row is not None and row.locked and row.run_id == run_id
    if not target.observer:
        assert row.waiter_count >= 1
    assert await s.flags_of(other, active_only=False) == []


async def test_force_clear_releases_exactly_that_run_refuses_a_stale_one_and_the_user_is_answered(
    target: Target,
) -> None:
    async with s.mirrored(target) as supervisor, s.chat_client(target) as client:
        key, run_id = await hung_session(target, client, "clear")
        bystander, bystander_run = await hung_session(target, client, "bystander")
        bridge = supervisor.bridge(s.GATEWAY)

        stale = await bridge.force_clear(key, "not-the-owner", "operator saw an older run")
        assert not stale.cleared and stale.reason == "owner_changed"
        assert stale.current is not None and stale.current.run_id == run_id

        done = await bridge.force_clear(key, run_id, "contract test: hung turn")
        assert done.cleared and done.run_id == run_id
        # Observer mode has no registry to clear: the run is aborted with chat.abort and
        # the result says so (OBSERVER_BLIND_SPOTS); plugin mode clears the entry itself.
        assert done.fallback == ("chat.abort" if target.observer else "")
        await s.eventually(
            s.run_released(key, run_id), target.turn_timeout_s, "cleared run released"
        )

        after = s.marked("after the clear")
        await s.send(client, key, after)

        async def answered() -> bool:
            return s.answered(await s.history(client, key), after)

        await s.eventually(answered, target.turn_timeout_s, "the next message is answered")
        assert await s.locked_by(bystander, bystander_run)()

    (cleared,) = [r for r in await s.runs_of(key) if r.run_id == run_id]
    assert cleared.release_how == "force_clear"


async def test_requeue_resends_waiting_and_aborted_messages_once_and_they_reach_history(
    target: Target,
) -> None:
    async with s.mirrored(target) as supervisor, s.chat_client(target) as client:
        key, run_id = await hung_session(target, client, "requeue")
        waiting_text = s.marked("waiting behind the hang")
        await s.send(client, key, waiting_text)
        if not target.observer:
            await s.eventually(s.waiting(key), target.turn_timeout_s, "a message waits")
        # else: observer mode cannot see it wait (OBSERVER_BLIND_SPOTS).
        bridge = supervisor.bridge(s.GATEWAY)

        # A hung (not wedged) turn settles when aborted, on every target: the abort
        # alone releases the lock (2026.5.28 too, protocol.md §3).
        await bridge.abort(key)
        await s.eventually(s.unlocked(key), target.turn_timeout_s, "the lock is gone")

        requeued = s.marked("requeued")
        messages = [(requeued, f"rq-{run_id}-1"), (waiting_text, f"rq-{run_id}-2")]
        first = await bridge.requeue(key, messages)
        again = await bridge.requeue(key, messages)
        assert [r.status for r in first] == ["started", "started"]
        assert all(r.status == "duplicate" for r in again)
        # Observer mode re-sends with chat.send under the same idempotency keys.
        assert {r.fallback for r in first + again} == {"chat.send" if target.observer else ""}

        async def in_history() -> bool:
            got = await s.history(client, key)
            return s.answered(got, requeued) and s.answered(got, waiting_text)

        await s.eventually(in_history, 2 * target.turn_timeout_s, "requeued messages answered")
        got = await s.history(client, key)
    assert s.user_count(got, requeued) == 1


async def test_after_a_gateway_restart_no_phantom_lock_remains_and_the_bridge_reconnects(
    target: Target,
) -> None:
    async with s.mirrored(target) as supervisor:
        async with s.chat_client(target) as client:
            key, _ = await hung_session(target, client, "restart")
        bridge = supervisor.bridge(s.GATEWAY)
        reconnects = bridge.state.reconnects
        await target.restart()

        async def reconnected() -> bool:
            state = bridge.state
            return state.status == "connected" and state.reconnects > reconnects

        await s.eventually(reconnected, target.turn_timeout_s, "the bridge reconnected")
        await s.eventually(s.unlocked(key), target.turn_timeout_s, "no phantom lock")
