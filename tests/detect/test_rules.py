"""The flag rules, on plain facts and an injected clock."""

from __future__ import annotations

from dataclasses import replace

from adminpanel.detect import (
    CRITICAL,
    SessionFacts,
    Thresholds,
    WaiterFact,
    evaluate,
    worst_severity,
)

T0 = 1_800_000_000.0
TH = Thresholds()
KEY = "agent:main:telegram:direct:42"


def locked(**overrides: object) -> SessionFacts:
    base = SessionFacts(
        session_key=KEY,
        locked=True,
        run_id="run-1",
        phase="running",
        lock_acquired_at=T0,
        last_progress_at=T0,
        store_status="running",
        store_status_at=T0,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def codes(facts: SessionFacts, now: float, th: Thresholds = TH) -> set[str]:
    return {f.code for f in evaluate(facts, now, th)}


def test_an_idle_session_has_no_flags() -> None:
    assert codes(SessionFacts(session_key=KEY, locked=False, store_status="done"), T0) == set()


def test_a_running_lock_within_the_stuck_threshold_has_no_flags() -> None:
    assert codes(locked(), T0 + 119) == set()


def test_a_lock_without_progress_past_the_threshold_is_flagged_no_progress() -> None:
    [finding] = evaluate(locked(), T0 + 121, TH)
    assert finding.code == "no_progress"
    assert finding.since == T0 + 120
    assert "running" in finding.why


def test_the_no_progress_threshold_can_differ_per_phase() -> None:
    th = Thresholds(stuck_after_by_phase={"queued": 10})
    assert codes(locked(phase="queued"), T0 + 11, th) == {"no_progress"}
    assert codes(locked(phase="running"), T0 + 11, th) == set()


def test_recent_progress_resets_the_no_progress_clock() -> None:
    assert codes(locked(last_progress_at=T0 + 100), T0 + 121) == set()


def test_no_progress_with_messages_waiting_is_critical() -> None:
    facts = locked(waiters=(WaiterFact("w1", T0 + 1, 15_000),))
    [finding] = evaluate(facts, T0 + 121, TH)
    assert finding.severity == CRITICAL


def test_a_terminal_run_still_holding_the_lock_is_the_leak_signature() -> None:
    facts = locked(phase="aborted", result="aborted", ended_at=T0 + 10, store_status="running")
    assert codes(facts, T0 + 14) == set()
    found = {f.code: f for f in evaluate(facts, T0 + 16, TH)}
    assert set(found) == {"terminal_but_held"}
    assert found["terminal_but_held"].since == T0 + 15
    assert found["terminal_but_held"].severity == CRITICAL


def test_a_terminal_held_lock_is_not_also_called_no_progress() -> None:
    facts = locked(phase="aborted", result="aborted", ended_at=T0, store_status="running")
    assert "no_progress" not in codes(facts, T0 + 1000)


def test_a_waiter_with_no_timeout_is_flagged_after_its_threshold() -> None:
    facts = locked(waiters=(WaiterFact("w1", T0 + 5, None),))
    assert "unbounded_waiter" not in codes(facts, T0 + 34)
    assert "unbounded_waiter" in codes(facts, T0 + 36)


def test_a_waiter_with_a_timeout_is_not_flagged_as_unbounded() -> None:
    facts = locked(waiters=(WaiterFact("w1", T0, 15_000),))
    assert "unbounded_waiter" not in codes(facts, T0 + 100)


def test_a_burst_of_skips_within_the_window_is_flagged() -> None:
    facts = SessionFacts(session_key=KEY, locked=False, skips=(T0, T0 + 1, T0 + 2))
    [finding] = evaluate(facts, T0 + 3, TH)
    assert finding.code == "skip_burst"
    assert finding.since == T0 + 2


def test_skips_spread_wider_than_the_window_are_not_a_burst() -> None:
    facts = SessionFacts(session_key=KEY, locked=False, skips=(T0, T0 + 70, T0 + 140))
    assert codes(facts, T0 + 141) == set()


def test_failures_alternating_with_successes_are_the_alternating_error() -> None:
    outcomes = ((T0, "drain_failed"), (T0 + 1, "ok"), (T0 + 2, "drain_failed"), (T0 + 3, "ok"))
    facts = SessionFacts(session_key=KEY, locked=False, outcomes=outcomes)
    [finding] = evaluate(facts, T0 + 4, TH)
    assert finding.code == "alternating_error"
    assert finding.since == T0 + 2
    assert "ReplyRunAlreadyActiveError" in finding.why


def test_a_single_drain_failure_is_not_yet_a_pattern() -> None:
    facts = SessionFacts(
        session_key=KEY, locked=False, outcomes=((T0, "drain_failed"), (T0 + 1, "ok"))
    )
    assert codes(facts, T0 + 2) == set()


def test_store_saying_done_while_the_registry_holds_the_lock_is_flagged() -> None:
    facts = locked(store_status="done", store_status_at=T0 + 2)
    assert "store_disagrees" not in codes(facts, T0 + 11)
    assert "store_disagrees" in codes(facts, T0 + 13)


def test_flags_clear_when_their_cause_goes() -> None:
    stuck = locked(phase="aborted", result="aborted", ended_at=T0, store_status="done")
    assert codes(stuck, T0 + 60) == {"terminal_but_held", "store_disagrees"}
    released = SessionFacts(session_key=KEY, locked=False, store_status="done")
    assert codes(released, T0 + 61) == set()


def test_worst_severity_picks_critical_over_warning() -> None:
    facts = locked(phase="aborted", result="aborted", ended_at=T0, store_status="done")
    assert worst_severity(evaluate(facts, T0 + 60, TH)) == CRITICAL
    assert worst_severity([]) == ""


def test_a_flags_why_names_absolute_times_so_it_does_not_go_stale() -> None:
    facts = locked(phase="aborted", result="aborted", ended_at=T0, store_status="running")
    [finding] = evaluate(facts, T0 + 60, TH)
    assert "ago" not in finding.why
    assert "UTC" in finding.why
