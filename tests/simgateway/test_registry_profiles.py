"""Each build's own failure (seeds 1 and 2) and the fixed build's self-healing."""

from __future__ import annotations

from simgateway.records import CLEARED_REPLY, DRAIN_FAILED_REPLY
from tests.simgateway.registry_helpers import KEY, rig

# --- 2026.5.28 (seed 1) ---------------------------------------------------------


def test_a_visible_waiter_on_2026_5_28_has_no_timeout_and_waits_forever() -> None:
    r = rig("2026.5.28")
    r.registry.dispatch(KEY, "please HANG")
    r.registry.dispatch(KEY, "anyone there?")
    assert r.of_kind("waiter.added")[0]["timeoutMs"] is None
    r.advance(24 * 3600)
    assert r.of_kind("waiter.resolved") == []
    assert len(r.registry.waiters(KEY)) == 1


def test_a_visible_waiter_on_2026_5_28_carries_no_message_of_its_own() -> None:
    r = rig("2026.5.28")
    r.registry.dispatch(KEY, "please HANG")
    r.registry.dispatch(KEY, "anyone there?")
    (added,) = r.of_kind("waiter.added")
    assert (added["messageId"], added["preview"], added["text"]) == (added["waiterId"], "", "")
    (entry,) = r.registry.snapshot()["entries"]
    (waiter,) = entry["waiters"]
    assert (waiter["messageId"], waiter["text"], waiter["turnKind"]) == (
        added["waiterId"], "", "visible",
    )  # fmt: skip


def test_an_aborted_hung_turn_settles_and_releases_on_2026_5_28() -> None:
    r = rig("2026.5.28")
    owner, _ = r.registry.dispatch(KEY, "please HANG")
    r.advance(1)
    assert r.registry.abort(KEY) == [owner]
    r.advance(1)
    assert r.of_kind("ended")[0]["result"] == "aborted"
    assert r.of_kind("released")[0]["how"] == "normal"
    nxt, _ = r.registry.dispatch(KEY, "hello again STALL:1")
    assert r.registry.entry(KEY).run_id == nxt  # type: ignore[union-attr]


def test_each_visible_turn_on_2026_5_28_is_followed_by_an_empty_drain_operation() -> None:
    r = rig("2026.5.28")
    owner, _ = r.registry.dispatch(KEY, "hello STALL:1")
    r.advance(2)
    acquired = r.of_kind("acquired")
    assert len(acquired) == 2 and acquired[0]["runId"] == owner
    drain = acquired[1]["runId"]
    assert [c["kind"] for c in r.changes if c.get("runId") == drain] == [
        "acquired", "ended", "released",
    ]  # fmt: skip
    assert r.registry.entry(KEY) is None


def test_abort_of_a_wedged_running_operation_leaks_the_entry_on_2026_5_28() -> None:
    r = rig("2026.5.28")
    owner, _ = r.registry.dispatch(KEY, "slow WEDGE")
    r.advance(1)
    assert r.registry.abort(KEY) == [owner]
    r.advance(3600)
    ended = r.of_kind("ended")[0]
    assert (ended["result"], ended["code"]) == ("aborted", "aborted_by_user")
    assert r.of_kind("released") == []
    entry = r.registry.entry(KEY)
    assert entry is not None and (entry.phase, entry.result) == ("aborted", "aborted")
    # The seed's picture: the store says killed, the registry still holds the lock.
    assert r.registry.session(KEY).status == "killed"  # type: ignore[union-attr]
    r.registry.dispatch(KEY, "hello?")
    assert r.of_kind("waiter.added")[0]["blockingRunId"] == owner


def test_a_completed_run_that_never_clears_leaves_the_store_done_on_2026_5_28() -> None:
    r = rig("2026.5.28", leak_after_complete_rate=1.0)
    r.registry.dispatch(KEY, "hello STALL:1")
    r.advance(3600)
    assert r.of_kind("ended")[0]["result"] == "completed"
    assert r.of_kind("released") == []
    assert r.registry.session(KEY).status == "done"  # type: ignore[union-attr]
    assert r.registry.active_run_ids(KEY) == []


def test_the_snapshot_on_2026_5_28_has_no_timestamps() -> None:
    r = rig("2026.5.28")
    r.registry.dispatch(KEY, "HANG")
    (entry,) = r.registry.snapshot()["entries"]
    assert (entry["startedAtMs"], entry["lastActivityAtMs"]) == (None, None)


# --- 2026.5.3 (seed 2) ------------------------------------------------------------


def test_sequential_sends_alternate_fail_and_pass_on_2026_5_3() -> None:
    r = rig("2026.5.3")
    outcomes = []
    for i in range(6):
        before = len(r.of_kind("drain.failed"))
        r.registry.dispatch(KEY, f"ok-{i} STALL:1")
        r.advance(2)
        outcomes.append("fail" if len(r.of_kind("drain.failed")) > before else "pass")
    assert outcomes == ["pass", "fail", "pass", "fail", "pass", "fail"]
    assert len(r.of_kind("acquired")) == 3


def test_a_drain_failure_on_2026_5_3_names_the_error_and_loses_the_message() -> None:
    r = rig("2026.5.3")
    first, _ = r.registry.dispatch(KEY, "one STALL:1")
    r.advance(2)
    lost, _ = r.registry.dispatch(KEY, "two")
    failed = r.of_kind("drain.failed")[0]
    assert failed["error"] == "ReplyRunAlreadyActiveError"
    assert failed["message"] == f"Reply run already active for {KEY}"
    assert (failed["blockingRunId"], failed["messageId"], failed["text"]) == (first, lost, "two")
    assert (
        f"followup queue drain failed for {KEY}: ReplyRunAlreadyActiveError: "
        f"Reply run already active for {KEY}"
    ) in r.log_texts()
    final = [p for name, p in r.events if name == "chat" and p["runId"] == lost]
    assert final[-1]["state"] == "final"
    assert final[-1]["message"]["content"][0]["text"] == DRAIN_FAILED_REPLY
    history = r.registry.session(KEY).history  # type: ignore[union-attr]
    assert "two" not in [m["content"] for m in history if m["role"] == "user"]
    assert r.registry.entry(KEY) is None


# --- 2026.9 (the fixed build) ------------------------------------------------------


def test_a_message_for_a_busy_session_on_2026_9_waits_in_the_follow_up_queue() -> None:
    r = rig("2026.9")
    r.registry.dispatch(KEY, "STALL:100")
    second, _ = r.registry.dispatch(KEY, "second STALL:1")
    (added,) = r.of_kind("waiter.added")
    assert (added["turnKind"], added["timeoutMs"]) == ("queued_followup", None)
    assert (added["messageId"], added["text"]) == (second, "second STALL:1")
    r.advance(60)
    assert len(r.of_kind("waiter.added")) == 1
    assert r.of_kind("waiter.resolved") == []
    r.advance(45)
    assert r.of_kind("waiter.resolved")[0]["outcome"] == "admitted"
    taken = r.of_kind("acquired")[1]
    assert (taken["runId"], taken["turnKind"]) == (second, "queued_followup")


def test_a_turn_on_2026_9_waits_for_the_global_lane_and_runs_again() -> None:
    r = rig("2026.9")
    r.registry.dispatch(KEY, "hello STALL:1")
    r.advance(2)
    phases = [c["phase"] for c in r.of_kind("phase")]
    assert phases == ["running", "waiting_for_global_lane", "running", "completed"]


def test_a_force_cleared_turn_on_2026_9_leaves_a_could_not_reply_message() -> None:
    r = rig("2026.9")
    owner, _ = r.registry.dispatch(KEY, "HANG")
    r.advance(1)
    assert r.registry.force_clear(KEY, owner, "operator")["phase"] == "aborted"
    history = r.registry.session(KEY).history  # type: ignore[union-attr]
    assert history[-1]["role"] == "assistant"
    assert history[-1]["content"][0]["text"] == CLEARED_REPLY


def test_a_terminal_run_that_never_clears_is_forced_released_on_2026_9() -> None:
    r = rig("2026.9", leak_after_complete_rate=1.0, terminal_settle_s=0.3)
    r.registry.dispatch(KEY, "hello STALL:1")
    r.advance(1.3)
    assert r.of_kind("released") == []
    r.advance(0.3)
    released = r.of_kind("released")[0]
    assert released["how"] == "forced_settle"
    (line,) = [t for t in r.log_texts() if t.startswith("reply run terminal settle")]
    assert line.startswith(
        f"reply run terminal settle: forced release sessionKey={KEY} phase=completed "
        "result=completed ageMs="
    )
    assert "ranForMs=" in line


def test_an_aborted_wedged_run_is_forced_released_after_the_settle_on_2026_9() -> None:
    r = rig("2026.9", terminal_settle_s=0.3)
    r.registry.dispatch(KEY, "WEDGE")
    r.advance(1)
    r.registry.abort(KEY)
    r.advance(0.2)
    assert r.of_kind("released") == []
    r.advance(0.2)
    assert r.of_kind("released")[0]["how"] == "forced_settle"


def test_an_aborted_running_turn_is_released_by_its_owner_on_2026_9() -> None:
    r = rig("2026.9")
    r.registry.dispatch(KEY, "HANG")
    r.advance(1)
    r.registry.abort(KEY)
    r.advance(0.2)
    assert r.of_kind("released")[0]["how"] == "normal"


def test_a_stale_hung_run_is_taken_over_when_a_waiter_rechecks_on_2026_9() -> None:
    r = rig("2026.9", stale_takeover_s=2.0, wait_slice_s=0.5)
    owner, _ = r.registry.dispatch(KEY, "HANG")
    waiting, _ = r.registry.dispatch(KEY, "second STALL:1")
    r.advance(1.5)
    assert r.of_kind("released") == []
    r.advance(1.0)
    ended = r.of_kind("ended")[0]
    assert (ended["runId"], ended["result"], ended["code"]) == (owner, "failed", "run_stalled")
    released = r.of_kind("released")[0]
    assert (released["how"], released["detail"]) == ("stale_takeover", "no_activity")
    assert r.of_kind("waiter.resolved")[0]["outcome"] == "admitted"
    assert r.registry.entry(KEY).run_id == waiting  # type: ignore[union-attr]
    assert (
        f"reply run stale takeover: forced release sessionKey={KEY} reason=no_activity"
        in r.log_texts()
    )


def test_a_new_message_takes_over_a_stale_run_at_admission_on_2026_9() -> None:
    r = rig("2026.9", stale_takeover_s=2.0)
    r.registry.dispatch(KEY, "HANG")
    r.advance(3)
    assert r.of_kind("released") == []  # no background reaper
    fresh, _ = r.registry.dispatch(KEY, "hello STALL:1")
    assert r.of_kind("released")[0]["how"] == "stale_takeover"
    assert r.registry.entry(KEY).run_id == fresh  # type: ignore[union-attr]


def test_a_hung_tool_call_gets_the_longer_stale_threshold_on_2026_9() -> None:
    r = rig("2026.9", stale_takeover_s=1.0, stale_takeover_tool_s=3.0, wait_slice_s=0.5)
    r.registry.dispatch(KEY, "TOOL HANG")
    r.registry.dispatch(KEY, "second")
    r.advance(2.0)
    assert r.of_kind("released") == []
    r.advance(1.5)
    assert r.of_kind("released")[0]["how"] == "stale_takeover"


def test_the_snapshot_on_2026_9_tracks_start_and_last_activity() -> None:
    r = rig("2026.9")
    r.registry.dispatch(KEY, "HANG")
    r.advance(1)
    (entry,) = r.registry.snapshot()["entries"]
    assert entry["startedAtMs"] == int((r.clock.now - 1) * 1000)
    assert entry["lastActivityAtMs"] >= entry["startedAtMs"]
