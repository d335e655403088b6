"""Values a hostile or buggy gateway sends: bounded in the decoder, never past the columns."""

from __future__ import annotations

import math
from typing import Any

import pytest
from django.apps import apps

from gateway_bridge import bounds
from gateway_bridge.events import FrameRejected, LockAcquired, WaiterAdded
from gateway_bridge.registry_decode import decode_or_reject, decode_snapshot

RECEIVED = 1_795_308_530.0
ACQUIRED = {
    "kind": "acquired",
    "bootId": "boot-1",
    "seq": 3,
    "ts": 1_795_308_521_150,
    "sessionKey": "agent:main:telegram:direct:1",
    "runId": "run-1",
    "sessionId": "s-1",
    "phase": "running",
    "turnKind": "visible",
}


def entry(**changes: Any) -> dict[str, Any]:
    return {
        "sessionKey": "agent:main:telegram:direct:1",
        "runId": "run-1",
        "sessionId": "s-1",
        "phase": "running",
        "result": None,
        "startedAtMs": 1_795_308_500_000,
        "lastActivityAtMs": None,
        "turnKind": "visible",
        "waiters": [],
        **changes,
    }


def test_every_declared_limit_fits_its_model_column() -> None:
    for name, (model, column) in bounds.COLUMNS.items():
        limit = {**bounds.ID_LIMITS, **bounds.TEXT_LIMITS}[name]
        field = apps.get_model("adminpanel", model)._meta.get_field(column)
        assert field.max_length is not None and limit <= field.max_length, name


def test_every_identifier_field_of_the_events_has_a_limit() -> None:
    assert set(bounds.ID_LIMITS) <= set(bounds.COLUMNS)
    assert {"session_key", "run_id", "waiter_id", "boot_id", "phase", "turn_kind"} <= set(
        bounds.ID_LIMITS
    )


@pytest.mark.parametrize(
    "ts", [math.inf, -math.inf, math.nan, 1e300, 1e17, 4_102_444_800_000, 0, 1_000_000]
)
def test_an_unbelievable_timestamp_becomes_the_receive_time_and_the_event_is_kept(
    ts: float,
) -> None:
    event = decode_or_reject("gw", {**ACQUIRED, "ts": ts}, RECEIVED)

    assert isinstance(event, LockAcquired)
    assert event.at == RECEIVED


def test_a_clock_a_little_ahead_is_believed() -> None:
    ts = (RECEIVED + 60) * 1000
    assert decode_or_reject("gw", {**ACQUIRED, "ts": ts}, RECEIVED).at == RECEIVED + 60


def test_a_waiter_timeout_beyond_a_year_waits_forever() -> None:
    payload = {
        **ACQUIRED,
        "kind": "waiter.added",
        "waiterId": "w-1",
        "timeoutMs": 10**20,
        "blockingRunId": "run-1",
        "messageId": "m-1",
        "preview": "hi",
        "text": "hi",
    }
    event = decode_or_reject("gw", payload, RECEIVED)
    assert isinstance(event, WaiterAdded) and event.timeout_ms is None


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("runId", "r" * 300, "'run_id' is longer than 128"),
        ("phase", "p" * 50, "'phase' is longer than 40"),
        ("turnKind", "t" * 40, "'turn_kind' is longer than 32"),
        ("sessionKey", "a\x00b", "NUL"),
    ],
)
def test_an_identifier_too_long_for_its_column_rejects_its_event_in_its_place(
    field: str, value: str, reason: str
) -> None:
    event = decode_or_reject("gw", {**ACQUIRED, field: value}, RECEIVED)

    assert isinstance(event, FrameRejected)
    assert (event.boot_id, event.seq, event.frame_kind) == ("boot-1", 3, "acquired")
    assert reason in event.reason


def test_a_frame_without_a_usable_sequence_number_is_rejected_unplaced() -> None:
    event = decode_or_reject("gw", {**ACQUIRED, "seq": 10**20}, RECEIVED)
    assert isinstance(event, FrameRejected) and (event.boot_id, event.seq) == ("", 0)


def test_text_with_nul_or_a_lone_surrogate_is_cleaned_not_rejected() -> None:
    event = decode_or_reject("gw", {**ACQUIRED, "preview": "a\x00b\ud800c"}, RECEIVED)
    assert isinstance(event, LockAcquired)
    assert event.message_preview == "a\ufffdb\ufffdc"


def test_one_bad_snapshot_entry_is_left_out_and_the_others_land() -> None:
    payload = {
        "bootId": "boot-1",
        "seq": 9,
        "ts": 1_795_308_521_150,
        "version": "v" * 300,
        "sessions": {"agent:main:telegram:direct:1": "running", "k" * 600: "done"},
        "entries": [
            entry(startedAtMs=math.inf),
            entry(sessionKey="agent:main:telegram:direct:2", runId="r" * 300),
            entry(sessionKey="agent:main:telegram:direct:3", runId="run-3", waiters="no"),
        ],
    }
    snapshot = decode_snapshot("gw", payload, RECEIVED)

    assert [e.session_key for e in snapshot.entries] == ["agent:main:telegram:direct:1"]
    assert snapshot.entries[0].started_at == RECEIVED
    assert snapshot.unread_keys == {"agent:main:telegram:direct:2", "agent:main:telegram:direct:3"}
    assert len(snapshot.rejected) == 3
    assert snapshot.session_statuses == {"agent:main:telegram:direct:1": "running"}
    assert len(snapshot.version) == bounds.TEXT_LIMITS["version"]
