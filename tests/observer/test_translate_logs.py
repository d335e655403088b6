"""Observer mode reads the known ``logs.tail`` signatures (openclaw-internals.md §3b, §5)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from gateway_bridge.events import (
    DispatchSkipped,
    FollowupDrainFailed,
    LockReleased,
    RegistryEvent,
)
from gateway_bridge.gateway_log import parse_log_line
from gateway_bridge.observer.translator import ObserverTranslator
from tests.observer.recording import frames

KEY = "agent:x:main"
T = 1_800_000_000.0


def tslog(text: str, *, positional: bool = False, level: str = "WARN") -> str:
    """A gateway log line as OpenClaw's file logger writes it (text under "message" or "1")."""
    line: dict[str, object] = {
        "0": '{"subsystem":"reply-run"}',
        "1": text,
        "_meta": {"logLevelName": level, "date": "2027-01-15T08:00:00.000Z"},
        "time": "2027-01-15T08:00:00.000+00:00",
    }
    if not positional:
        line["message"] = text
    return json.dumps(line)


def translator() -> ObserverTranslator:
    return ObserverTranslator(gateway="gw", boot_id="observer:b:1", version="2026.5.28")


def running(t: ObserverTranslator, key: str, run_id: str) -> None:
    t.event(
        "agent",
        {
            "runId": run_id,
            "sessionKey": key,
            "stream": "lifecycle",
            "data": {"phase": "start"},
            "ts": T * 1000,
        },
        T,
    )


def test_text_comes_from_message_or_from_the_positional_arguments_and_time_from_the_line() -> None:
    with_message = parse_log_line(tslog("hello there"))
    positional = parse_log_line(tslog("hello there", positional=True))
    plain = parse_log_line("followup queue drain failed for k: E: m")

    assert with_message is not None and positional is not None and plain is not None
    assert with_message.text == positional.text == "hello there"
    assert with_message.at == datetime(2027, 1, 15, 8, 0, tzinfo=UTC).timestamp()
    assert with_message.level == "WARN"
    assert (plain.text, plain.at) == ("followup queue drain failed for k: E: m", None)


def test_every_line_of_the_real_recording_parses_to_text() -> None:
    logs = [
        f
        for f in frames()
        if isinstance(f["frame"].get("payload"), dict) and "lines" in f["frame"]["payload"]
    ]
    lines = logs[0]["frame"]["payload"]["lines"]

    parsed = [parse_log_line(line) for line in lines]
    assert all(p is not None and p.text and p.at for p in parsed)
    assert parsed[0] is not None and parsed[0].text == "database integrity verification passed"


def test_a_verbose_admission_skip_line_is_a_dispatch_skip_with_its_reason() -> None:
    t = translator()
    running(t, KEY, "run-1")
    line = f"dispatch-from-config: skipped reply operation admission for {KEY}; reason=active-run"

    [skip] = t.log_lines([tslog(line, level="DEBUG")], T + 5)

    assert isinstance(skip, DispatchSkipped)
    assert (skip.session_key, skip.reason, skip.blocking_run_id) == (KEY, "active-run", "run-1")


def test_a_followup_drain_failure_keeps_the_whole_key_with_its_colons_and_the_error() -> None:
    t = translator()
    line = (
        f"followup queue drain failed for {KEY}: ReplyRunAlreadyActiveError: "
        f"Reply run already active for {KEY}"
    )

    [failed] = t.log_lines([tslog(line, level="ERROR")], T)

    assert isinstance(failed, FollowupDrainFailed)
    assert (failed.session_key, failed.error) == (KEY, "ReplyRunAlreadyActiveError")
    assert failed.message == f"Reply run already active for {KEY}"


def test_a_terminal_settle_line_releases_a_lock_held_after_its_run_ended_as_forced_settle() -> None:
    t = translator()
    running(t, KEY, "run-1")
    t.event("chat", {"runId": "run-1", "sessionKey": KEY, "state": "aborted"}, T + 1)
    line = (
        f"reply run terminal settle: forced release sessionKey={KEY} phase=aborted "
        "result=aborted ageMs=61000 ranForMs=900"
    )

    [released] = t.log_lines([tslog(line)], T + 61)

    assert isinstance(released, LockReleased)
    assert (released.run_id, released.how) == ("run-1", "forced_settle")
    assert "ageMs=61000" in released.detail
    assert t.owner_of(KEY) is None


def test_a_settle_line_after_sessions_list_showed_the_lock_gone_corrects_how_it_went() -> None:
    t = translator()
    running(t, KEY, "run-1")
    t.event("chat", {"runId": "run-1", "sessionKey": KEY, "state": "final"}, T + 1)
    [released] = [
        e
        for e in t.sessions([{"key": KEY, "activeRunIds": []}], T + 2, T + 2)
        if isinstance(e, LockReleased)
    ]
    line = f"reply run terminal settle: forced release sessionKey={KEY} phase=completed"

    [corrected] = t.log_lines([tslog(line)], T + 60)
    again = t.log_lines([tslog(line)], T + 61)

    assert released.how == "normal"
    assert isinstance(corrected, LockReleased)
    assert (corrected.run_id, corrected.how) == ("run-1", "forced_settle")
    assert again == []


def test_a_stale_takeover_line_names_its_reason_and_is_not_repeated_after_the_run_said_so() -> None:
    t = translator()
    running(t, KEY, "run-1")
    ended = t.event(
        "agent",
        {
            "runId": "run-1",
            "sessionKey": KEY,
            "stream": "lifecycle",
            "data": {"phase": "error", "error": "Reply operation expired as stale"},
        },
        T + 600,
    )
    line = f"reply run stale takeover: forced release sessionKey={KEY} reason=no_activity"

    from_log = t.log_lines([tslog(line)], T + 601)

    released = [e for e in ended if isinstance(e, LockReleased)]
    assert [(e.how, e.run_id) for e in released] == [("stale_takeover", "run-1")]
    assert from_log == []


def test_a_stale_takeover_line_alone_releases_the_run_that_held_the_key() -> None:
    t = translator()
    running(t, KEY, "run-1")
    t.event(
        "agent",
        {
            "runId": "run-1",
            "sessionKey": KEY,
            "stream": "lifecycle",
            "data": {"phase": "error", "error": "boom"},
        },
        T + 600,
    )
    line = f"reply run stale takeover: forced release sessionKey={KEY} reason=terminal_unreleased"

    [released] = t.log_lines([tslog(line)], T + 601)

    assert isinstance(released, LockReleased)
    assert (released.how, released.detail) == ("stale_takeover", "terminal_unreleased")


def test_stuck_and_stalled_session_diagnostics_are_kept_with_their_fields_not_made_events() -> None:
    t = translator()
    stuck = (
        f"[diagnostic] stuck session: sessionId=s-1 sessionKey={KEY} state=processing age=49s "
        "queueDepth=2 reason=queued_work_without_active_run classification=stale_session_state"
    )
    stalled = (
        f"[diagnostic] stalled session: sessionId=s-2 sessionKey={KEY}:2 state=processing "
        "reason=active_work_without_progress activeWorkKind=model_call lastProgressAge=1436s"
    )

    out: list[RegistryEvent] = t.log_lines([tslog(stuck), tslog(stalled, positional=True)], T)

    assert out == []
    first, second = t.diagnostics
    assert (first.kind, first.session_key, first.fields["age"]) == ("stuck", KEY, "49s")
    assert first.fields["reason"] == "queued_work_without_active_run"
    assert (second.kind, second.session_key) == ("stalled", KEY + ":2")


def test_unrelated_and_malformed_lines_are_ignored() -> None:
    t = translator()

    out = t.log_lines(["", "{not json", json.dumps([1, 2]), 42, tslog("all good")], T)

    assert out == [] and t.diagnostics == []
