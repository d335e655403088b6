"""Observer mode's translation of a real OpenClaw 2026.9.6 conversation (recorded frames).

The recording: rec-b's normal turn; rec-a's turn hangs after ``starting_model``;
a second message to rec-a waits with no event at all; ``chat.abort`` aborts
both; the waiting run ends ``final`` without a message; ``sessions.list``
between and after.
"""

from __future__ import annotations

import itertools

from gateway_bridge.events import (
    DispatchSkipped,
    LockAcquired,
    LockReleased,
    PhaseChanged,
    RegistryEvent,
    RunActivity,
    RunEnded,
    SessionStatusChanged,
)
from tests.observer.recording import replay

REC_A = "agent:main:telegram:direct:rec-a"
REC_B = "agent:main:telegram:direct:rec-b"
RUN_B = "5e6c4d2f-aa42-43d2-bce7-dac46074fdd4"
HUNG = "7647eefd-47f7-4890-9cec-6e26c91dd7af"
WAITING = "d80bcc88-fe34-4626-8fc6-d4cce71dd8a4"


def of_session(events: list[RegistryEvent], key: str) -> list[RegistryEvent]:
    return [e for e in events if getattr(e, "session_key", None) == key]


def test_the_first_sessions_list_of_an_idle_gateway_is_an_empty_snapshot_at_seq_0() -> None:
    snapshot, _, _ = replay()

    assert (snapshot.seq, snapshot.entries, snapshot.session_statuses) == (0, (), {})
    assert snapshot.boot_id == "observer:17022e30-c90e-4f1f-94bc-3c3bd389ee60:replay"
    assert snapshot.version == "2026.9.6"


def test_events_are_numbered_from_1_without_gaps_under_one_boot_id() -> None:
    snapshot, events, _ = replay()

    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert {e.boot_id for e in events} == {snapshot.boot_id}


def test_a_normal_turn_is_acquired_queued_runs_ends_completed_and_is_released_when_idle() -> None:
    _, events, _ = replay()

    turn = [e for e in of_session(events, REC_B) if not isinstance(e, SessionStatusChanged)]
    kinds = [type(e).__name__ for e in turn]
    assert kinds[:2] == ["LockAcquired", "PhaseChanged"]
    assert kinds[-2:] == ["RunEnded", "LockReleased"]
    assert set(kinds[2:-2]) <= {"RunActivity"}
    acquired, running, ended, released = turn[0], turn[1], turn[-2], turn[-1]
    assert isinstance(acquired, LockAcquired) and isinstance(running, PhaseChanged)
    assert (acquired.run_id, acquired.phase, acquired.turn_kind) == (RUN_B, "queued", "visible")
    assert running.phase == "running"
    assert isinstance(ended, RunEnded) and (ended.result, ended.code) == ("completed", "")
    assert isinstance(released, LockReleased) and (released.run_id, released.how) == (
        RUN_B,
        "normal",
    )


def test_assistant_deltas_are_activity_at_most_once_a_second_per_run() -> None:
    _, events, _ = replay()

    activity = [e for e in events if isinstance(e, RunActivity)]
    times = [e.at for e in activity if e.run_id == RUN_B]
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(times))
    assert len(activity) <= 3


def test_the_hung_turn_holds_its_lock_running_until_the_abort_and_the_idle_poll() -> None:
    _, events, _ = replay()

    hung = [e for e in of_session(events, REC_A) if getattr(e, "run_id", "") == HUNG]
    kinds = [type(e).__name__ for e in hung if not isinstance(e, RunActivity)]
    assert kinds == ["LockAcquired", "PhaseChanged", "RunEnded", "LockReleased"]
    ended = next(e for e in hung if isinstance(e, RunEnded))
    assert (ended.result, ended.code) == ("aborted", "aborted_by_user")
    # The lock goes only when sessions.list shows no active run, after the abort.
    statuses = [e for e in of_session(events, REC_A) if isinstance(e, SessionStatusChanged)]
    assert [s.status for s in statuses] == ["running", "killed"]
    assert hung[-1].seq > statuses[-1].seq


def test_the_waiting_message_dropped_by_the_abort_is_one_skip_blamed_on_the_hung_run() -> None:
    _, events, _ = replay()

    [skip] = [e for e in events if isinstance(e, DispatchSkipped)]
    assert (skip.session_key, skip.reason) == (REC_A, "aborted")
    assert (skip.message_id, skip.blocking_run_id) == (WAITING, HUNG)
    assert not [e for e in events if getattr(e, "run_id", "") == WAITING]


def test_the_recorded_log_lines_carry_no_known_signature() -> None:
    _, _, translator = replay()

    assert translator.diagnostics == []
