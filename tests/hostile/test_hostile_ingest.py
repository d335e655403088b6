"""Hostile values reach ingest: the bad event is noted alone, the good ones around it land.

Runs on the configured database: SQLite by default, PostgreSQL under
``python -m stack.with_backends`` (where an over-long value is a DataError).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from adminpanel.ingest import Ingestor
from adminpanel.ingest.applier import Applier
from adminpanel.models import Gateway, Run, Session, TimelineEvent, Waiter
from gateway_bridge.events import (
    GatewayStarted,
    LockAcquired,
    PhaseChanged,
    RegistryEvent,
    Snapshot,
    SnapshotEntry,
    WaiterAdded,
)
from gateway_bridge.registry_decode import decode_or_reject

pytestmark = pytest.mark.django_db

NOW = 1_795_308_600.0
KEY = "agent:main:telegram:direct:1"


def ev(cls: type[RegistryEvent], seq: int, **kw: Any) -> RegistryEvent:
    kw.setdefault("at", NOW - 100 + seq)
    return cls(gateway="gw", boot_id="boot-1", seq=seq, received_at=NOW - 100 + seq, **kw)


def ingestor() -> Ingestor:
    return Ingestor(clock=lambda: NOW)


def good_then_bad_then_good(bad: RegistryEvent) -> list[RegistryEvent]:
    return [
        ev(GatewayStarted, 1, version="1"),
        ev(LockAcquired, 2, session_key=KEY, run_id="run-1"),
        bad,
        ev(PhaseChanged, 4, session_key=KEY, run_id="run-1", phase="running"),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        ev(LockAcquired, 3, session_key="agent:x:y:z:2", run_id="r" * 300),
        ev(LockAcquired, 3, session_key="agent:x:y:z:2", run_id="r", phase="p" * 64),
        ev(LockAcquired, 3, session_key="agent:x:y:z:2", run_id="r", turn_kind="t" * 64),
        ev(LockAcquired, 3, session_key="k" * 600, run_id="r"),
    ],
    ids=["run_id", "phase", "turn_kind", "session_key"],
)
def test_an_event_too_long_for_its_columns_is_noted_and_the_batch_lands(
    bad: RegistryEvent,
) -> None:
    result = ingestor().apply(good_then_bad_then_good(bad))

    assert result.applied == 4 and result.held == 0
    session = Session.objects.get(session_key=KEY)
    assert (session.locked, session.phase) == (True, "running")
    assert list(TimelineEvent.objects.order_by("seq").values_list("seq", "kind")) == [
        (1, "gateway_started"),
        (2, "lock_acquired"),
        (3, "frame_rejected"),
        (4, "phase_changed"),
    ]
    gw = Gateway.objects.get(name="gw")
    assert gw.rejected_frames == 1 and "longer than" in gw.last_rejected_reason
    assert (gw.boot_id, gw.last_seq) == ("boot-1", 4)


@pytest.mark.parametrize("at", [math.inf, 1e300, 1e17, 4_102_444_800.0])
def test_an_unbelievable_time_from_any_mode_is_stored_as_the_receive_time(at: float) -> None:
    ingestor().apply(
        good_then_bad_then_good(ev(LockAcquired, 3, session_key="agent:x:y:z:2", run_id="r", at=at))
    )

    run = Run.objects.get(run_id="r")
    assert run.started_at is not None and run.started_at.timestamp() == NOW - 97
    assert Gateway.objects.get(name="gw").rejected_frames == 0


def test_a_huge_waiter_timeout_is_stored_as_waiting_forever() -> None:
    waiter = ev(
        WaiterAdded, 3, session_key=KEY, waiter_id="w", timeout_ms=10**20, message_text="hi"
    )
    ingestor().apply(good_then_bad_then_good(waiter))

    assert Waiter.objects.get(waiter_id="w").timeout_ms is None


def test_wire_payloads_with_hostile_values_cost_only_themselves() -> None:
    def wire(seq: int, **kw: Any) -> dict[str, Any]:
        base = {"bootId": "boot-1", "seq": seq, "ts": (NOW - 50) * 1000, "sessionKey": KEY}
        return {**base, **kw}

    payloads = [
        wire(1, kind="started", version="2026", profile="p"),
        wire(2, kind="acquired", runId="run-1", sessionId="s", phase="queued", turnKind="visible"),
        wire(3, kind="phase", runId="r" * 300, phase="running"),
        wire(4, kind="phase", runId="run-1", phase="running", ts=math.inf),
        wire(
            5,
            kind="waiter.added",
            waiterId="w",
            timeoutMs=10**20,
            turnKind="visible",
            blockingRunId="run-1",
            messageId="m",
            preview="p\x00",
            text="t\ud800",
        ),
        wire(10**20, kind="phase", runId="run-1", phase="running"),
        wire(6, kind="activity", runId="run-1", activity="tool"),
    ]
    events = [decode_or_reject("gw", p, NOW - 40) for p in payloads]

    result = ingestor().apply(events)

    assert result.applied == 6 and result.held == 0
    assert Session.objects.get(session_key=KEY).phase == "running"
    assert Waiter.objects.get(waiter_id="w").text == "t\ufffd"
    gw = Gateway.objects.get(name="gw")
    assert (gw.last_seq, gw.rejected_frames) == (6, 2)
    assert "longer than 128" in gw.last_rejected_reason


def test_a_snapshot_entry_that_could_not_be_read_leaves_its_session_as_it_was() -> None:
    other = "agent:main:telegram:direct:2"
    ingestor().apply(
        [
            ev(GatewayStarted, 1),
            ev(LockAcquired, 2, session_key=KEY, run_id="run-1"),
            ev(LockAcquired, 3, session_key=other, run_id="run-2"),
        ]
    )
    snapshot = ev(
        Snapshot,
        4,
        entries=(SnapshotEntry(session_key=KEY, run_id="run-1", started_at=math.inf),),
        rejected=("entry 'agent:main:telegram:direct:2': field 'run_id' is longer than 128",),
        unread_keys=frozenset({other}),
    )

    ingestor().apply([snapshot])

    assert Session.objects.get(session_key=other).locked  # unknown: not reconciled away
    assert Session.objects.get(session_key=KEY).locked
    gw = Gateway.objects.get(name="gw")
    assert gw.last_seq == 4 and gw.rejected_frames == 1


def test_an_event_that_fails_to_apply_is_noted_and_the_rest_of_its_batch_lands(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = Applier.lock_acquired

    def explode_on_boom(self: Applier, event: LockAcquired) -> Any:
        if event.run_id == "boom":
            raise RuntimeError("the store could not take it")
        return real(self, event)

    monkeypatch.setattr(Applier, "lock_acquired", explode_on_boom)
    monkeypatch.setattr(
        Applier, "__init__", _with_handler(Applier.__init__, "lock_acquired", LockAcquired)
    )

    result = ingestor().apply(
        good_then_bad_then_good(ev(LockAcquired, 3, session_key="agent:x:y:z:2", run_id="boom"))
    )

    assert result.applied == 4
    assert Session.objects.get(session_key=KEY).phase == "running"
    assert TimelineEvent.objects.get(seq=3).kind == "frame_rejected"
    gw = Gateway.objects.get(name="gw")
    assert "could not take it" in gw.last_rejected_reason and gw.last_seq == 4


def _with_handler(init: Any, name: str, cls: type) -> Any:
    """Applier binds its handlers at init: rebind the patched one."""

    def patched(self: Applier, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.handlers[cls] = getattr(self, name)

    return patched
