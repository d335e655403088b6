"""Observer mode's inference rules, fed with payloads shaped like the gateway's."""

from __future__ import annotations

from typing import Any

from gateway_bridge.events import (
    DispatchSkipped,
    GatewayStopping,
    LockAcquired,
    LockReleased,
    PhaseChanged,
    RegistryEvent,
    RunEnded,
    SessionStatusChanged,
    WaiterAdded,
    WaiterResolved,
)
from gateway_bridge.observer import OBSERVER_BLIND_SPOTS
from gateway_bridge.observer.translator import ObserverTranslator, waiter_timeout_ms_for
from tests.observer.test_translate_logs import tslog

KEY = "agent:main:telegram:direct:alice"
T = 1_800_000_000.0


def translator(version: str = "2026.5.28") -> ObserverTranslator:
    return ObserverTranslator(
        gateway="gw",
        boot_id="observer:b:1",
        version=version,
        waiter_timeout_ms=waiter_timeout_ms_for(version),
    )


def agent(run_id: str, stream: str, at: float, key: str = KEY, **data: Any) -> dict[str, Any]:
    return {
        "runId": run_id,
        "sessionKey": key,
        "sessionId": "s-1",
        "stream": stream,
        "data": data,
        "ts": int(at * 1000),
        "isHeartbeat": False,
    }


def row(key: str = KEY, *, active: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"key": key, "sessionId": "s-1", **fields}
    if active is not None:
        out["activeRunIds"] = active
        out["hasActiveRun"] = bool(active)
    return out


def kinds(events: list[RegistryEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


def start(t: ObserverTranslator, run_id: str, at: float = T) -> list[RegistryEvent]:
    return t.event("agent", agent(run_id, "lifecycle", at, phase="start"), at)


def test_the_blind_spots_are_a_short_list_of_sentences() -> None:
    assert 3 <= len(OBSERVER_BLIND_SPOTS) <= 12
    assert all(s.endswith(".") and s[0].isupper() for s in OBSERVER_BLIND_SPOTS)


def test_waits_have_no_timeout_on_5x_builds_and_a_15_s_slice_from_2026_7() -> None:
    assert waiter_timeout_ms_for("2026.5.28") is None
    assert waiter_timeout_ms_for("2026.9.6") == 15_000
    assert waiter_timeout_ms_for("2026.7.0-beta.1") == 15_000
    assert waiter_timeout_ms_for("dev") is None


def test_run_status_phases_before_the_model_are_queued_and_the_lifecycle_start_is_running() -> None:
    t = translator()
    first = t.event("agent", agent("r1", "run_status", T, phase="preparing_workspace"), T)
    again = t.event(
        "chat",
        {"runId": "r1", "sessionKey": KEY, "state": "status", "phase": "preparing_context"},
        T,
    )
    running = start(t, "r1", T + 1)

    [acquired] = first
    assert isinstance(acquired, LockAcquired)
    assert (acquired.run_id, acquired.phase, acquired.message_id) == ("r1", "queued", "r1")
    assert again == []
    assert [(type(e).__name__, getattr(e, "phase", "")) for e in running] == [
        ("PhaseChanged", "running")
    ]


def test_a_heartbeat_run_is_acquired_as_a_heartbeat_turn() -> None:
    t = translator()
    payload = agent("hb", "lifecycle", T, phase="start") | {"isHeartbeat": True}

    [acquired] = t.event("agent", payload, T)

    assert isinstance(acquired, LockAcquired) and acquired.turn_kind == "heartbeat"


def test_a_second_active_run_id_while_the_lock_is_held_is_a_waiter_with_the_builds_timeout() -> (
    None
):
    for version, timeout in (("2026.5.28", None), ("2026.9.6", 15_000)):
        t = translator(version)
        start(t, "owner")

        events = t.sessions([row(active=["waiting", "owner"], status="running")], T + 1, T + 1)

        [waiter] = [e for e in events if isinstance(e, WaiterAdded)]
        assert (waiter.waiter_id, waiter.message_id) == ("waiting", "waiting")
        assert (waiter.blocking_run_id, waiter.timeout_ms) == ("owner", timeout)


def test_a_waiter_that_starts_after_the_owner_leaves_is_admitted_and_takes_the_lock() -> None:
    t = translator()
    start(t, "owner")
    t.sessions([row(active=["waiting", "owner"])], T + 1, T + 1)
    t.event(
        "chat",
        {"runId": "owner", "sessionKey": KEY, "state": "final", "message": {"role": "assistant"}},
        T + 2,
    )

    events = start(t, "waiting", T + 3)

    assert kinds(events) == ["LockReleased", "WaiterResolved", "LockAcquired"]
    released, resolved, acquired = events
    assert isinstance(released, LockReleased) and released.run_id == "owner"
    assert isinstance(resolved, WaiterResolved) and resolved.outcome == "admitted"
    assert isinstance(acquired, LockAcquired) and acquired.run_id == "waiting"


def test_an_unknown_active_run_on_an_unlocked_session_is_a_queued_lock_until_it_runs() -> None:
    t = translator()

    polled = t.sessions([row(active=["r1"], status="done")], T, T)
    running = start(t, "r1", T + 1)

    [acquired] = [e for e in polled if isinstance(e, LockAcquired)]
    assert (acquired.run_id, acquired.phase) == ("r1", "queued")
    assert kinds(running) == ["PhaseChanged"]


def test_when_the_run_taken_for_the_owner_turns_out_to_wait_the_running_one_takes_over() -> None:
    t = translator()
    t.sessions([row(active=["owner", "waiting"])], T, T)  # the sim lists the owner last

    events = start(t, "owner", T + 1)

    assert kinds(events) == ["LockReleased", "WaiterResolved", "LockAcquired", "WaiterAdded"]
    assert isinstance(events[3], WaiterAdded) and events[3].blocking_run_id == "owner"
    owner = t.owner_of(KEY)
    assert owner is not None and [w.waiter_id for w in owner.waiters] == ["waiting"]


def test_a_waiter_dropped_by_an_abort_is_one_skip_with_reason_aborted_after_it_settles() -> None:
    t = translator()
    start(t, "owner")
    t.sessions([row(active=["waiting", "owner"])], T + 1, T + 1)
    # The simulated gateway aborts the waiters first, then the owner.
    dropped = t.event("chat", {"runId": "waiting", "sessionKey": KEY, "state": "final"}, T + 2)
    t.event("chat", {"runId": "owner", "sessionKey": KEY, "state": "aborted"}, T + 2)

    early = t.settle(T + 2.1)
    settled = t.settle(T + 2 + t.drop_settle_s)
    skip_line = f"dispatch-from-config: skipped reply operation admission for {KEY}; reason=aborted"
    log_line = t.log_lines([tslog(skip_line)], T + 3)

    assert dropped == [] and early == []
    resolved, skip = settled
    assert isinstance(resolved, WaiterResolved) and resolved.outcome == "aborted"
    assert isinstance(skip, DispatchSkipped)
    assert (skip.reason, skip.message_id, skip.blocking_run_id) == ("aborted", "waiting", "owner")
    assert log_line == []  # the same skip, seen again in the log


def test_a_message_whose_run_ends_empty_while_the_owner_runs_on_was_merged_not_skipped() -> None:
    t = translator("2026.9.6")
    start(t, "owner")
    t.sessions([row(active=["owner", "steered"])], T + 1, T + 1)
    # Real 2026.9.6 steers a message into a busy run and ends its own run empty.
    t.event("chat", {"runId": "steered", "sessionKey": KEY, "state": "final"}, T + 1.2)

    undecided = t.settle(T + 1.2 + t.drop_settle_s)
    next_check = t.next_settle_at
    later = t.settle(T + 1.2 + t.unconfirmed_drop_s)

    assert undecided == [] and next_check == T + 1.2 + t.unconfirmed_drop_s
    [resolved] = later
    assert isinstance(resolved, WaiterResolved) and resolved.outcome == "admitted"
    assert t.next_settle_at is None


def test_a_dropped_message_carried_into_a_run_the_gateway_starts_itself_is_not_a_skip() -> None:
    t = translator("2026.9.6")
    start(t, "owner")
    # Real 2026.9.6, chat.abort of the owner alone: the waiting message's run ends empty
    # and a follow-up run with a new id starts at once, carrying it.
    t.event("chat", {"runId": "owner", "sessionKey": KEY, "state": "aborted"}, T + 1)
    t.event("chat", {"runId": "waiting", "sessionKey": KEY, "state": "final"}, T + 1.1)
    carried = t.event(
        "agent", agent("followup", "run_status", T + 1.6, phase="preparing_workspace"), T + 1.6
    )

    later = t.settle(T + 5)

    assert kinds(carried) == ["LockReleased", "LockAcquired"]
    assert later == [] and not [e for e in carried if isinstance(e, DispatchSkipped)]


def test_a_running_sessions_start_time_from_a_finished_run_is_not_taken_for_the_lock_age() -> None:
    t = translator("2026.9.6")
    start(t, "r1", T)
    t.event("agent", agent("r1", "lifecycle", T + 2, phase="end"), T + 2)
    t.sessions([row(active=[], status="done", startedAt=int(T * 1000))], T + 3, T + 3)

    events = t.sessions(
        [row(active=["r2"], status="running", startedAt=int(T * 1000))], T + 10, T + 10
    )

    [acquired] = [e for e in events if isinstance(e, LockAcquired)]
    assert (acquired.run_id, acquired.phase, acquired.at) == ("r2", "queued", T + 10)


def test_a_waiter_gone_without_an_abort_is_a_skip_when_the_log_names_it() -> None:
    t = translator()
    start(t, "owner")
    t.sessions([row(active=["waiting", "owner"])], T + 1, T + 1)
    gone = t.sessions([row(active=["owner"])], T + 16, T + 16)
    skip_line = (
        f"dispatch-from-config: skipped reply operation admission for {KEY}; reason=active-run"
    )

    nothing_yet = t.settle(T + 17)
    from_log = t.log_lines([tslog(skip_line, level="DEBUG")], T + 18)

    assert gone == [] and nothing_yet == []
    resolved, skip = from_log
    assert isinstance(resolved, WaiterResolved) and resolved.outcome == "timed_out"
    assert isinstance(skip, DispatchSkipped)
    assert (skip.reason, skip.message_id) == ("active-run", "waiting")


def test_a_run_ends_but_its_lock_goes_only_when_the_session_shows_no_active_run() -> None:
    t = translator()
    start(t, "r1")

    ended = t.event("agent", agent("r1", "lifecycle", T + 1, phase="end"), T + 1)
    late = t.event("agent", agent("r1", "lifecycle", T + 1, phase="model"), T + 1)
    still = t.sessions([row(active=["r1"])], T + 2, T + 2)
    idle = t.sessions([row(active=[])], T + 3, T + 3)

    assert kinds(ended) == ["RunEnded"] and t.wants_poll is False  # a poll was taken since
    assert late == [] and still == []
    assert kinds(idle) == ["LockReleased"]


def test_a_terminal_event_asks_for_an_early_poll() -> None:
    t = translator()
    start(t, "r1")

    t.event(
        "chat",
        {
            "runId": "r1",
            "sessionKey": KEY,
            "state": "error",
            "errorMessage": "model request failed",
        },
        T + 1,
    )

    assert t.wants_poll is True
    owner = t.owner_of(KEY)
    assert owner is not None and (owner.result, owner.code) == ("failed", "run_failed")


def test_has_active_run_without_ids_and_a_start_time_is_a_lock_under_a_synthetic_run_id() -> None:
    t = translator("2026.9.6")
    rows = [row(hasActiveRun=True, status="running", startedAt=int(T * 1000))]

    snapshot = t.load(rows, T + 30, T + 30)
    ended = t.event("chat", {"runId": "real", "sessionKey": KEY, "state": "aborted"}, T + 31)

    [entry] = snapshot.entries
    assert entry.run_id == f"observed:s-1:{int(T * 1000)}"
    assert (entry.phase, entry.started_at) == ("running", T)
    assert kinds(ended) == ["LockReleased", "LockAcquired", "RunEnded"]
    assert isinstance(ended[2], RunEnded) and ended[2].run_id == "real"


def test_has_active_run_without_ids_or_start_time_shows_no_lock() -> None:
    t = translator()

    snapshot = t.load([{"key": KEY, "status": "running", "hasActiveRun": True}], T, T)

    assert snapshot.entries == ()
    assert snapshot.session_statuses == {KEY: "running"}


def test_builds_without_has_active_run_use_the_store_status() -> None:
    t = translator()
    start(t, "r1")

    events = t.sessions([{"key": KEY, "status": "done"}], T + 1, T + 1)

    assert kinds(events) == ["SessionStatusChanged", "LockReleased"]


def test_a_session_gone_from_a_complete_list_releases_its_lock_but_not_from_a_partial_one() -> None:
    t = translator()
    start(t, "r1")

    partial = t.sessions([], T + 1, T + 1, complete=False)
    complete = t.sessions([], T + 2, T + 2)

    assert partial == [] and kinds(complete) == ["LockReleased"]


def test_sessions_changed_with_a_status_only_changes_the_status_and_asks_for_a_poll() -> None:
    t = translator()
    start(t, "r1")

    events = t.event(
        "sessions.changed",
        {"sessionKey": KEY, "reason": "status", "status": "done", "ts": int(T * 1000) + 500},
        T + 1,
    )

    [changed] = events
    assert isinstance(changed, SessionStatusChanged) and changed.status == "done"
    assert changed.at == T + 0.5
    assert t.wants_poll and t.owner_of(KEY) is not None


def test_once_sessions_changed_carries_whole_rows_a_run_end_needs_no_early_poll() -> None:
    t = translator("2026.9.6")
    start(t, "r1")
    t.event("sessions.changed", {"sessionKey": KEY, "session": row(active=["r1"])}, T + 1)

    t.event("chat", {"runId": "r1", "sessionKey": KEY, "state": "final"}, T + 2)
    released = t.event("sessions.changed", {"sessionKey": KEY, "session": row(active=[])}, T + 3)

    assert t.rows_from_events and not t.wants_poll
    assert kinds(released) == ["LockReleased"]


def test_a_sessions_list_answer_older_than_an_applied_change_event_is_not_applied() -> None:
    t = translator()
    start(t, "r1")
    t.event(
        "sessions.changed",
        {"sessionKey": KEY, "ts": int(T * 1000) + 2000, "session": row(active=[], status="done")},
        T + 2,
    )

    stale = t.sessions([row(active=["r1"], status="running")], T + 1, T + 2.1)

    assert stale == [] and t.owner_of(KEY) is None


def test_sessions_changed_carrying_active_run_ids_is_applied_like_a_row() -> None:
    t = translator()
    start(t, "r1")

    events = t.event("sessions.changed", {"sessionKey": KEY, "activeRunIds": []}, T + 1)

    assert kinds(events) == ["LockReleased"]


def test_the_snapshot_lists_locks_with_their_waiters_and_numbers_after_every_event() -> None:
    t = translator("2026.9.6")
    first = t.load([], T, T)
    start(t, "owner")
    t.sessions([row(active=["waiting", "owner"], status="running")], T + 1, T + 1)

    snapshot = t.snapshot(T + 2, T + 2)
    after = start(t, "other", T + 3)

    assert first.seq == 0
    [entry] = snapshot.entries
    assert (entry.run_id, entry.phase, entry.started_at) == ("owner", "running", T)
    [waiter] = entry.waiters
    assert (waiter.waiter_id, waiter.since, waiter.timeout_ms) == ("waiting", T + 1, 15_000)
    assert snapshot.session_statuses == {KEY: "running"}
    assert snapshot.seq == t.seq - len(after) > 0
    assert all(e.seq > snapshot.seq for e in after)


def test_loading_again_on_a_reconnect_numbers_the_snapshot_past_what_was_delivered() -> None:
    t = translator()
    t.load([], T, T)
    start(t, "r1")
    delivered = t.seq

    again = t.load([row(active=["r1"], status="running", startedAt=int(T * 1000))], T + 5, T + 5)

    assert again.seq == delivered + 1
    [entry] = again.entries
    assert entry.run_id == "r1"


def test_a_shutdown_event_is_gateway_stopping() -> None:
    t = translator()

    [stopping] = t.event("shutdown", {"reason": "gateway stopping", "restartExpectedMs": 500}, T)

    assert isinstance(stopping, GatewayStopping)
    assert (stopping.reason, stopping.restart_expected_ms) == ("gateway stopping", 500)


def test_events_without_a_run_or_session_key_or_with_odd_payloads_are_ignored() -> None:
    t = translator()

    assert t.event("agent", {"stream": "lifecycle", "data": {"phase": "start"}}, T) == []
    assert t.event("chat", {"runId": "r", "state": "final"}, T) == []
    assert t.event("agent", "not an object", T) == []
    assert t.event("tick", {"ts": 1}, T) == []
    assert t.sessions(["x", {"key": ""}, {"nokey": 1}], T, T) == []


def test_a_phase_change_after_the_run_ended_is_ignored() -> None:
    t = translator()
    start(t, "r1")
    t.event("chat", {"runId": "r1", "sessionKey": KEY, "state": "aborted"}, T + 1)

    late = t.event("agent", agent("r1", "run_status", T + 2, phase="starting_model"), T + 2)

    assert late == []
    assert not [e for e in late if isinstance(e, PhaseChanged)]
