"""Ingest, one behaviour each: snapshots, restarts, gaps, flags, connection state."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from adminpanel.detect import Thresholds
from adminpanel.ingest import Ingestor
from adminpanel.models import DispatchSkip, Flag, Gateway, Run, Session, TimelineEvent, Waiter
from gateway_bridge.events import (
    DispatchSkipped,
    GatewayStarted,
    LockAcquired,
    LockReleased,
    PhaseChanged,
    RunEnded,
    Snapshot,
    SnapshotEntry,
    SnapshotWaiter,
    WaiterAdded,
)
from tests.ingest.streams import KEY, OTHER, T0, GatewayScript

pytestmark = pytest.mark.django_db


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ingestor(clock: Clock, **kw: object) -> Ingestor:
    return Ingestor(thresholds=Thresholds(terminal_held_after_s=5.0), clock=clock, **kw)  # type: ignore[arg-type]


def two_locked_sessions(g: GatewayScript) -> list:
    return [
        g.next(GatewayStarted, version="2026.5.28"),
        g.next(LockAcquired, session_key=KEY, run_id="run-1"),
        g.next(PhaseChanged, session_key=KEY, run_id="run-1", phase="running"),
        g.next(WaiterAdded, session_key=KEY, waiter_id="w-1", message_text="are you there?"),
        g.next(LockAcquired, session_key=OTHER, run_id="run-2"),
    ]


def test_a_clean_stream_locks_sessions_and_moves_the_cursor() -> None:
    g = GatewayScript()
    result = ingestor(Clock(T0 + 10)).apply(two_locked_sessions(g))
    assert (result.applied, result.duplicates, result.held) == (5, 0, 0)
    assert result.changed_sessions == {("gw", KEY), ("gw", OTHER)}
    session = Session.objects.get(session_key=KEY)
    assert (session.locked, session.run_id, session.phase, session.waiter_count) == (
        True,
        "run-1",
        "running",
        1,
    )
    assert (session.agent, session.channel) == ("main", "telegram")
    assert Gateway.objects.get(name="gw").last_seq == 5
    assert TimelineEvent.objects.count() == 5


def test_the_same_events_delivered_twice_are_applied_once() -> None:
    g = GatewayScript()
    events = two_locked_sessions(g)
    ing = ingestor(Clock(T0 + 10))
    ing.apply(events)
    again = ing.apply(events)
    assert (again.applied, again.duplicates) == (0, 5)
    assert TimelineEvent.objects.count() == 5
    assert Waiter.objects.count() == 1


def test_a_big_batch_over_a_rewound_cursor_skips_the_rows_already_stored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A batch big enough for PostgreSQL's COPY path meets timeline rows and a
    waiter already stored (the cursor was rewound): those are skipped, the rest land,
    in one write (not event by event after the batch failed)."""
    g = GatewayScript()
    events = [g.next(GatewayStarted, version="2026.5.28")]
    for i in range(40):
        key = f"agent:main:telegram:direct:{i}"
        events.append(g.next(LockAcquired, session_key=key, run_id=f"run-{i}"))
        events.append(g.next(WaiterAdded, session_key=key, waiter_id=f"w-{i}"))
    ing = ingestor(Clock(T0 + 200))
    ing.apply(events[:41])
    stored = TimelineEvent.objects.count()
    Gateway.objects.filter(name="gw").update(last_seq=0)  # an operator rewound the cursor
    for i in range(40, 80):
        key = f"agent:main:telegram:direct:{i}"
        events.append(g.next(LockAcquired, session_key=key, run_id=f"run-{i}"))
    result = ingestor(Clock(T0 + 200)).apply(events)
    assert result.applied == len(events)
    assert stored == 41
    assert TimelineEvent.objects.count() == len(events)
    assert sorted(TimelineEvent.objects.values_list("seq", flat=True)) == list(
        range(1, len(events) + 1)
    )
    assert Waiter.objects.count() == 40
    assert Session.objects.filter(locked=True).count() == 80
    assert "batch_write_failed" not in caplog.text


def test_snapshot_reconciliation_releases_a_lock_missing_from_the_snapshot() -> None:
    g = GatewayScript()
    ing = ingestor(Clock(T0 + 10))
    ing.apply(two_locked_sessions(g))
    # The bridge missed changes 6..9; at 9 only OTHER is still locked, with a new waiter.
    snap = Snapshot(
        gateway="gw",
        boot_id=g.boot_id,
        seq=9,
        at=T0 + 9,
        received_at=T0 + 9,
        entries=(
            SnapshotEntry(
                session_key=OTHER,
                run_id="run-2",
                phase="running",
                waiters=(SnapshotWaiter(waiter_id="w-2", since=T0 + 8),),
            ),
        ),
        session_statuses={KEY: "done", OTHER: "running"},
    )
    result = ing.apply([snap])
    assert result.applied == 1
    released = Session.objects.get(session_key=KEY)
    assert (released.locked, released.waiter_count, released.store_status) == (False, 0, "done")
    run = Run.objects.get(run_id="run-1")
    assert (run.release_how, run.released_at is not None) == ("reconciled", True)
    assert Waiter.objects.get(waiter_id="w-1").outcome == "cleared"
    still = Session.objects.get(session_key=OTHER)
    assert (still.locked, still.phase, still.waiter_count) == (True, "running", 1)
    assert Gateway.objects.get(name="gw").last_seq == 9
    assert TimelineEvent.objects.filter(kind="lock_reconciled", run_id="run-1").exists()


def test_restart_closes_runs_as_lost_at_restart() -> None:
    g = GatewayScript()
    ing = ingestor(Clock(T0 + 10))
    ing.apply(two_locked_sessions(g))
    g.restart("boot-b")
    ing.apply([g.next(GatewayStarted, version="2026.9.6")])
    assert not Session.objects.filter(locked=True).exists()
    assert set(Run.objects.values_list("release_how", flat=True)) == {"restart"}
    assert Waiter.objects.get(waiter_id="w-1").outcome == "cleared"
    assert TimelineEvent.objects.filter(kind="run_lost_at_restart").count() == 2
    gw = Gateway.objects.get(name="gw")
    assert (gw.boot_id, gw.last_seq, gw.past_boot_ids, gw.version) == (
        "boot-b",
        1,
        ["boot-a"],
        "2026.9.6",
    )


def test_a_late_event_from_the_previous_boot_is_ignored() -> None:
    g = GatewayScript()
    ing = ingestor(Clock(T0 + 10))
    events = two_locked_sessions(g)
    ing.apply(events)
    g.restart("boot-b")
    ing.apply([g.next(GatewayStarted)])
    late = ing.apply([events[1]])
    assert (late.applied, late.duplicates) == (0, 1)
    assert not Session.objects.filter(locked=True).exists()


def test_an_event_ahead_of_a_missing_one_waits_for_it() -> None:
    g = GatewayScript()
    ing = ingestor(Clock(T0 + 10))
    first, second, third = (
        g.next(GatewayStarted),
        g.next(LockAcquired, session_key=KEY, run_id="run-1"),
        g.next(PhaseChanged, session_key=KEY, run_id="run-1", phase="running"),
    )
    held = ing.apply([first, third])
    assert (held.applied, held.held, held.needs_snapshot) == (1, 1, False)
    filled = ing.apply([second])
    assert (filled.applied, filled.held) == (2, 0)
    assert Session.objects.get(session_key=KEY).phase == "running"


def test_a_gap_beyond_the_window_asks_for_a_snapshot() -> None:
    g = GatewayScript()
    ing = ingestor(Clock(T0 + 10), reorder_window=3)
    events = [g.next(GatewayStarted)] + [
        g.next(DispatchSkipped, session_key=KEY, reason="active-run") for _ in range(6)
    ]
    result = ing.apply([events[0], *events[2:]])  # seq 2 never arrives
    assert (result.applied, result.held, result.needs_snapshot) == (1, 5, True)
    snap = Snapshot(gateway="gw", boot_id=g.boot_id, seq=4, at=g.at, received_at=g.at)
    after = ing.apply([snap])
    # Held events up to the snapshot's seq are covered by it; the rest follow it.
    assert (after.applied, after.held, after.needs_snapshot) == (4, 0, False)
    assert Gateway.objects.get(name="gw").last_seq == 7
    assert DispatchSkip.objects.count() == 3


def test_a_gap_that_outlives_the_reorder_wait_asks_for_a_snapshot() -> None:
    g = GatewayScript()
    clock = Clock(T0 + 10)
    ing = ingestor(clock, reorder_wait_s=2.0)
    events = [
        g.next(GatewayStarted),
        g.next(LockAcquired, session_key=KEY, run_id="r"),
        g.next(PhaseChanged, session_key=KEY, run_id="r", phase="running"),
    ]
    assert not ing.apply([events[0], events[2]]).needs_snapshot
    clock.now += 5.0
    assert ing.apply([]).needs_snapshot
    assert ing.gaps_overdue() == {"gw"}


def test_a_terminal_but_held_run_is_flagged_on_tick_and_cleared_on_release() -> None:
    g = GatewayScript()
    clock = Clock(T0 + 3)
    ing = ingestor(clock)
    ing.apply(
        [
            g.next(GatewayStarted),
            g.next(LockAcquired, session_key=KEY, run_id="run-1"),
            g.next(
                RunEnded, session_key=KEY, run_id="run-1", result="aborted", code="aborted_by_user"
            ),
        ]
    )
    assert not Flag.objects.exists()  # ended a moment ago: not yet a leak

    clock.now = g.at + 30
    assert ing.tick() == {("gw", KEY)}
    flag = Flag.objects.get(code="terminal_but_held")
    assert (flag.severity, flag.cleared_at) == ("critical", None)
    assert flag.since.timestamp() == pytest.approx(g.at + 5.0)
    session = Session.objects.get(session_key=KEY)
    assert (session.flag_count, session.worst_severity) == (1, "critical")
    assert ing.tick() == set()  # nothing changed: nothing to broadcast

    result = ing.apply([g.next(LockReleased, session_key=KEY, run_id="run-1", how="forced_settle")])
    assert ("gw", KEY) in result.changed_sessions
    flag.refresh_from_db()
    assert flag.cleared_at is not None
    session.refresh_from_db()
    assert (session.locked, session.flag_count, session.worst_severity) == (False, 0, "")


def test_record_connection_mirrors_the_bridge_state_onto_a_new_gateway_row() -> None:
    state = SimpleNamespace(
        status="connected",
        mode="plugin",
        boot_id="boot-x",
        version="2026.9.6",
        last_event_at=T0,
        last_error=None,
        reconnects=2,
        connected_since=T0 - 60,
    )
    ingestor(Clock(T0)).record_connection("fresh", state)
    gw = Gateway.objects.get(name="fresh")
    assert (gw.status, gw.mode, gw.version, gw.reconnects) == ("connected", "plugin", "2026.9.6", 2)
    assert gw.connected_since is not None and gw.connected_since.timestamp() == T0 - 60
    assert gw.boot_id == ""  # the cursor only moves with applied events
