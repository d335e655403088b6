"""The registry payloads of docs/protocol.md §2 decode into normalized events, strictly."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from gateway_bridge import events as ev
from gateway_bridge.registry_decode import (
    DecodeError,
    decode_registry_event,
    decode_snapshot,
    decode_snapshot_entry,
)

KEY = "agent:main:telegram:direct:42"
RUN = "7647eefd-47f7-4890-9cec-6e26c91dd7af"
COMMON = {"bootId": "boot-1", "seq": 7, "ts": 1795308521150}

# One valid wire payload per kind, and the normalized type it must become.
PAYLOADS: dict[str, tuple[dict[str, Any], type[ev.RegistryEvent]]] = {
    "started": ({"version": "2026.9.6", "profile": "2026.9"}, ev.GatewayStarted),
    "stopping": ({"reason": "restart", "restartExpectedMs": 5000}, ev.GatewayStopping),
    "acquired": (
        {
            "sessionKey": KEY,
            "runId": RUN,
            "sessionId": "cf3e234e",
            "phase": "queued",
            "turnKind": "visible",
            "messageId": "m-1",
            "preview": "hello",
        },
        ev.LockAcquired,
    ),
    "phase": ({"sessionKey": KEY, "runId": RUN, "phase": "running"}, ev.PhaseChanged),
    "activity": ({"sessionKey": KEY, "runId": RUN, "activity": "model_delta"}, ev.RunActivity),
    "ended": (
        {"sessionKey": KEY, "runId": RUN, "result": "failed", "code": "run_failed"},
        ev.RunEnded,
    ),
    "released": (
        {"sessionKey": KEY, "runId": RUN, "how": "force_clear", "detail": "operator"},
        ev.LockReleased,
    ),
    "waiter.added": (
        {
            "sessionKey": KEY,
            "waiterId": "w-17",
            "timeoutMs": None,
            "turnKind": "visible",
            "blockingRunId": RUN,
            "messageId": "d80bcc88",
            "preview": "second MSG-a2a2",
            "text": "second MSG-a2a2",
        },
        ev.WaiterAdded,
    ),
    "waiter.resolved": (
        {"sessionKey": KEY, "waiterId": "w-17", "outcome": "admitted"},
        ev.WaiterResolved,
    ),
    "skipped": (
        {
            "sessionKey": KEY,
            "reason": "active-run",
            "blockingRunId": RUN,
            "messageId": "m-2",
            "preview": "hi",
            "text": "hi",
        },
        ev.DispatchSkipped,
    ),
    "drain.failed": (
        {
            "sessionKey": KEY,
            "error": "ReplyRunAlreadyActiveError",
            "message": f"Reply run already active for {KEY}",
            "messageId": "m-3",
            "preview": "again",
            "text": "again",
        },
        ev.FollowupDrainFailed,
    ),
    "session.status": (
        {"sessionKey": KEY, "status": "done", "sessionId": "s-1"},
        ev.SessionStatusChanged,
    ),
}


def wire(kind: str, **overrides: Any) -> dict[str, Any]:
    fields, _ = PAYLOADS[kind]
    payload = {**COMMON, "kind": kind, **copy.deepcopy(fields)}
    for name, value in overrides.items():
        if value is ...:
            payload.pop(name, None)
        else:
            payload[name] = value
    return payload


def snapshot_wire() -> dict[str, Any]:
    return {
        "bootId": "boot-1",
        "seq": 1832,
        "ts": 1795308521122,
        "version": "2026.9.6",
        "profile": "2026.9",
        "entries": [
            {
                "sessionKey": KEY,
                "sessionId": "cf3e234e",
                "runId": RUN,
                "phase": "aborted",
                "result": {"kind": "aborted", "code": "aborted_by_user"},
                "turnKind": "visible",
                "startedAtMs": 1795308513054,
                "lastActivityAtMs": None,
                "waiters": [
                    {
                        "waiterId": "w-17",
                        "sinceMs": 1795308517119,
                        "timeoutMs": None,
                        "turnKind": "visible",
                        "messageId": "d80bcc88",
                        "preview": "second",
                        "text": "second",
                    }
                ],
            }
        ],
        "sessions": {KEY: "done"},
    }


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_every_registry_event_kind_decodes_to_its_normalized_type(kind: str) -> None:
    event = decode_registry_event("gw", wire(kind), received_at=1795308530.0)

    assert type(event) is PAYLOADS[kind][1]
    assert (event.gateway, event.boot_id, event.seq) == ("gw", "boot-1", 7)
    assert event.at == pytest.approx(1795308521.150)
    assert event.received_at == 1795308530.0


def test_a_waiter_with_a_null_timeout_waits_forever() -> None:
    event = decode_registry_event("gw", wire("waiter.added"), 0.0)

    assert isinstance(event, ev.WaiterAdded)
    assert event.timeout_ms is None
    assert event.message_text == "second MSG-a2a2"
    assert event.blocking_run_id == RUN


def test_a_waiter_with_a_timeout_keeps_it_in_milliseconds() -> None:
    event = decode_registry_event("gw", wire("waiter.added", timeoutMs=15000), 0.0)

    assert isinstance(event, ev.WaiterAdded)
    assert event.timeout_ms == 15000


def test_optional_fields_may_be_absent_or_null() -> None:
    acquired = decode_registry_event("gw", wire("acquired", messageId=..., preview=None), 0.0)
    ended = decode_registry_event("gw", wire("ended", code=None), 0.0)
    skipped = decode_registry_event("gw", wire("skipped", blockingRunId=...), 0.0)

    assert isinstance(acquired, ev.LockAcquired) and acquired.message_id == ""
    assert isinstance(ended, ev.RunEnded) and ended.code == ""
    assert isinstance(skipped, ev.DispatchSkipped) and skipped.blocking_run_id == ""


def test_a_phase_from_a_newer_build_is_accepted() -> None:
    event = decode_registry_event("gw", wire("phase", phase="waiting_for_global_lane"), 0.0)

    assert isinstance(event, ev.PhaseChanged)
    assert event.phase == "waiting_for_global_lane"


def test_preview_and_text_are_capped() -> None:
    long = "x" * 20_000
    event = decode_registry_event("gw", wire("skipped", preview=long, text=long), 0.0)

    assert isinstance(event, ev.DispatchSkipped)
    assert len(event.message_preview) == 120
    assert len(event.message_text) == 8000


@pytest.mark.parametrize(
    ("kind", "field", "value", "message"),
    [
        ("phase", "runId", ..., "registry event 'phase' needs string field 'runId'"),
        ("phase", "runId", 42, "registry event 'phase' needs string field 'runId'"),
        ("acquired", "sessionKey", "", "registry event 'acquired' needs string field 'sessionKey'"),
        ("acquired", "sessionId", ..., "needs string field 'sessionId'"),
        ("activity", "bootId", ..., "needs string field 'bootId'"),
        ("phase", "seq", "7", "needs non-negative integer field 'seq'"),
        ("phase", "seq", True, "needs non-negative integer field 'seq'"),
        ("phase", "seq", -1, "needs non-negative integer field 'seq'"),
        ("phase", "ts", None, "needs millisecond timestamp field 'ts'"),
        ("ended", "result", "exploded", "field 'result' is 'exploded', not one of"),
        ("released", "how", "restart", "field 'how' is 'restart', not one of"),
        ("waiter.added", "timeoutMs", ..., "needs integer or null field 'timeoutMs'"),
        ("waiter.added", "timeoutMs", "15s", "needs non-negative integer field 'timeoutMs'"),
        ("waiter.added", "text", None, "registry event 'waiter.added' needs string field 'text'"),
        ("waiter.resolved", "outcome", "maybe", "field 'outcome' is 'maybe'"),
        ("skipped", "reason", "busy", "field 'reason' is 'busy'"),
        ("drain.failed", "messageId", ..., "needs string field 'messageId'"),
        ("session.status", "status", "zombie", "field 'status' is 'zombie'"),
        ("started", "version", 3, "registry event 'started' needs string field 'version'"),
        ("stopping", "restartExpectedMs", "soon", "field 'restartExpectedMs'"),
        ("phase", "sessionKey", "k" * 513, "field 'sessionKey' is longer than 512 characters"),
        ("phase", "phase", "p" * 65, "field 'phase' is longer than 64 characters"),
    ],
)
def test_a_malformed_registry_event_names_the_field(
    kind: str, field: str, value: Any, message: str
) -> None:
    with pytest.raises(DecodeError, match=re.escape(message)):
        decode_registry_event("gw", wire(kind, **{field: value}), 0.0)


def test_an_unknown_kind_is_an_error() -> None:
    with pytest.raises(DecodeError, match="registry event kind 'teleported' is unknown"):
        decode_registry_event("gw", {**COMMON, "kind": "teleported"}, 0.0)


def test_a_missing_kind_is_an_error() -> None:
    with pytest.raises(DecodeError, match="needs string field 'kind'"):
        decode_registry_event("gw", dict(COMMON), 0.0)


@pytest.mark.parametrize("payload", [None, [], "started", 7])
def test_a_payload_that_is_not_an_object_is_an_error(payload: object) -> None:
    with pytest.raises(DecodeError, match="registry event must be an object"):
        decode_registry_event("gw", payload, 0.0)


def test_a_snapshot_decodes_entries_waiters_and_statuses_in_seconds() -> None:
    snapshot = decode_snapshot("gw", snapshot_wire(), received_at=1795308530.0)

    assert (snapshot.boot_id, snapshot.seq, snapshot.version, snapshot.profile) == (
        "boot-1",
        1832,
        "2026.9.6",
        "2026.9",
    )
    assert snapshot.received_at == 1795308530.0
    [entry] = snapshot.entries
    assert (entry.session_key, entry.run_id, entry.phase) == (KEY, RUN, "aborted")
    assert (entry.result, entry.code) == ("aborted", "aborted_by_user")
    assert entry.started_at == pytest.approx(1795308513.054)
    assert entry.last_activity_at is None
    [waiter] = entry.waiters
    assert waiter.waiter_id == "w-17"
    assert waiter.since == pytest.approx(1795308517.119)
    assert waiter.timeout_ms is None
    assert snapshot.session_statuses == {KEY: "done"}


def test_a_running_entry_has_no_result() -> None:
    raw = snapshot_wire()["entries"][0]
    raw["result"] = None

    entry = decode_snapshot_entry(raw)

    assert (entry.result, entry.code) == ("", "")


def test_an_empty_snapshot_decodes() -> None:
    raw = snapshot_wire()
    raw["entries"], raw["sessions"] = [], {}

    snapshot = decode_snapshot("gw", raw, 0.0)

    assert snapshot.entries == ()
    assert snapshot.session_statuses == {}


def _break_entry_run_id(raw: dict[str, Any]) -> None:
    del raw["entries"][0]["runId"]


def _break_waiter_since(raw: dict[str, Any]) -> None:
    raw["entries"][0]["waiters"][0]["sinceMs"] = "yesterday"


def _break_result_kind(raw: dict[str, Any]) -> None:
    raw["entries"][0]["result"] = {"kind": "vanished"}


def _break_entries(raw: dict[str, Any]) -> None:
    raw["entries"] = {}


def _break_sessions(raw: dict[str, Any]) -> None:
    raw["sessions"] = {KEY: "sleeping"}


def _break_sessions_type(raw: dict[str, Any]) -> None:
    raw["sessions"] = []


def _break_version(raw: dict[str, Any]) -> None:
    del raw["version"]


@pytest.mark.parametrize(
    ("breaker", "message"),
    [
        (_break_entries, "snapshot needs array field 'entries'"),
        (_break_sessions_type, "snapshot needs object field 'sessions'"),
        (_break_version, "snapshot needs string field 'version'"),
    ],
)
def test_a_malformed_snapshot_names_the_field(breaker: Any, message: str) -> None:
    raw = snapshot_wire()
    breaker(raw)

    with pytest.raises(DecodeError, match=re.escape(message)):
        decode_snapshot("gw", raw, 0.0)


@pytest.mark.parametrize(
    ("breaker", "message"),
    [
        (_break_entry_run_id, "snapshot entries[0] needs string field 'runId'"),
        (
            _break_waiter_since,
            "snapshot entries[0] waiters[0] needs millisecond timestamp field 'sinceMs'",
        ),
        (_break_result_kind, "snapshot entries[0] result field 'kind' is 'vanished'"),
        (_break_sessions, "status 'sleeping', not one of"),
    ],
)
def test_a_malformed_snapshot_entry_is_left_out_alone_with_its_reason(
    breaker: Any, message: str
) -> None:
    raw = snapshot_wire()
    breaker(raw)

    snapshot = decode_snapshot("gw", raw, 0.0)

    assert any(message in reason for reason in snapshot.rejected)
    assert snapshot.seq == raw["seq"]
