"""Reply-run registry behaviour every profile shares."""

from __future__ import annotations

import pytest

from tests.simgateway.registry_helpers import KEY, OTHER, rig

ALL_PROFILES = ("2026.5.28", "2026.5.3", "2026.9")


def test_started_is_seq_1_and_every_change_takes_the_next_seq() -> None:
    r = rig("2026.9")
    r.registry.dispatch(KEY, "hello STALL:1")
    r.advance(2)
    assert r.changes[0]["kind"] == "started"
    assert [c["seq"] for c in r.changes] == list(range(1, len(r.changes) + 1))
    assert {c["bootId"] for c in r.changes} == {r.registry.boot_id}


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_a_turn_goes_queued_running_completed_then_is_released_normally(profile: str) -> None:
    r = rig(profile)
    run_id, _ = r.registry.dispatch(KEY, "hello STALL:1")
    r.advance(2)
    turn = [c for c in r.changes if c.get("runId") in (run_id, None) and c["kind"] != "started"]
    assert [c["kind"] for c in turn if c["kind"] != "phase"] == [
        "acquired", "session.status", "ended", "session.status", "released",
    ]  # fmt: skip
    assert r.of_kind("acquired")[0]["phase"] == "queued"
    phases = [c["phase"] for c in turn if c["kind"] == "phase"]
    # 2026.9 waits for the global lane once it runs (seen on 2026.9.6).
    assert [p for p in phases if p != "waiting_for_global_lane"][-2:] == ["running", "completed"]
    assert phases[0] == "running"
    assert r.of_kind("ended")[0]["result"] == "completed"
    assert r.of_kind("released")[0]["how"] == "normal"
    assert [c["status"] for c in r.of_kind("session.status")] == ["running", "done"]
    assert r.registry.entry(KEY) is None


def test_preflight_compaction_and_memory_flush_come_between_queued_and_running() -> None:
    r = rig("2026.9", compaction_rate=1.0, memory_flush_rate=1.0)
    r.registry.dispatch(KEY, "hello STALL:1")
    r.advance(2)
    phases = [c["phase"] for c in r.of_kind("phase")]
    assert phases[:3] == ["preflight_compacting", "memory_flushing", "running"]
    assert phases[-1] == "completed"


def test_a_streaming_turn_reports_activity_while_running() -> None:
    r = rig("2026.9", turn_median_s=3.0, turn_cap_s=3.0, activity_interval_s=0.5)
    r.registry.dispatch(KEY, "hello")
    r.advance(1.6)
    activity = r.of_kind("activity")
    assert len(activity) >= 2
    assert {a["activity"] for a in activity} == {"model_delta"}


def test_a_hung_turn_stays_running_with_no_activity() -> None:
    r = rig("2026.9")
    r.registry.dispatch(KEY, "please HANG now")
    r.advance(30)
    entry = r.registry.entry(KEY)
    assert entry is not None and entry.phase == "running" and entry.result is None
    assert r.of_kind("activity") == []


def test_a_failing_turn_ends_failed_with_run_failed_and_is_released() -> None:
    r = rig("2026.5.28")
    r.registry.dispatch(KEY, "FAIL STALL:1")
    r.advance(2)
    ended = r.of_kind("ended")[0]
    assert (ended["result"], ended["code"]) == ("failed", "run_failed")
    assert r.of_kind("released")[0]["how"] == "normal"
    assert r.registry.session(KEY).status == "failed"  # type: ignore[union-attr]


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_a_heartbeat_for_a_locked_session_is_skipped_at_once(profile: str) -> None:
    r = rig(profile)
    owner, _ = r.registry.dispatch(KEY, "HANG")
    r.registry.dispatch(KEY, "beat", turn_kind="heartbeat")
    skipped = r.of_kind("skipped")
    assert len(skipped) == 1
    assert (skipped[0]["reason"], skipped[0]["blockingRunId"]) == ("active-run", owner)
    assert (
        f"dispatch-from-config: skipped reply operation admission for {KEY}; reason=active-run"
        in r.log_texts()
    )
    assert r.of_kind("waiter.added") == []


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_a_queued_followup_waits_15_s_then_times_out_and_is_skipped(profile: str) -> None:
    r = rig(profile)
    r.registry.dispatch(KEY, "HANG")
    r.registry.dispatch(KEY, "later", turn_kind="queued_followup")
    assert r.of_kind("waiter.added")[0]["timeoutMs"] == 15000
    r.advance(14)
    assert r.of_kind("waiter.resolved") == []
    r.advance(2)
    assert r.of_kind("waiter.resolved")[0]["outcome"] == "timed_out"
    assert r.of_kind("skipped")[0]["reason"] == "active-run"


def test_waiters_wake_on_release_and_retry_admission_oldest_first() -> None:
    r = rig("2026.5.28")
    r.registry.dispatch(KEY, "first STALL:1")
    second, _ = r.registry.dispatch(KEY, "second STALL:1")
    third, _ = r.registry.dispatch(KEY, "third STALL:1")
    r.advance(1.5)
    resolved = r.of_kind("waiter.resolved")
    assert [w["outcome"] for w in resolved] == ["admitted", "admitted"]
    assert r.registry.entry(KEY).run_id == second  # type: ignore[union-attr]
    waiting = r.registry.waiters(KEY)
    assert [w.message.run_id for w in waiting] == [third]
    assert waiting[0].blocking_run_id == second


def test_a_waiter_on_a_locked_session_does_not_block_other_sessions() -> None:
    r = rig("2026.5.28")
    r.registry.dispatch(KEY, "HANG")
    r.registry.dispatch(KEY, "stuck behind it")
    r.registry.dispatch(OTHER, "hello STALL:1")
    r.advance(2)
    assert r.kinds(OTHER)[-1] == "released"


def test_abort_of_a_waiting_message_skips_it_with_reason_aborted() -> None:
    r = rig("2026.5.28")
    owner, _ = r.registry.dispatch(KEY, "HANG")
    waiting, _ = r.registry.dispatch(KEY, "second")
    assert r.registry.abort(KEY, waiting) == [waiting]
    assert r.of_kind("waiter.resolved")[0]["outcome"] == "aborted"
    assert r.of_kind("skipped")[0]["reason"] == "aborted"
    assert r.registry.entry(KEY).run_id == owner  # type: ignore[union-attr]


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_abort_of_a_queued_operation_clears_the_entry(profile: str) -> None:
    r = rig(profile, queue_delay_s=5.0)
    run_id, _ = r.registry.dispatch(KEY, "hello")
    assert r.registry.abort(KEY) == [run_id]
    assert r.of_kind("ended")[0]["result"] == "aborted"
    assert r.of_kind("released")[0]["how"] == "normal"
    assert r.registry.entry(KEY) is None


def test_force_clear_of_the_owner_aborts_it_releases_and_admits_the_waiter() -> None:
    r = rig("2026.5.28")
    owner, _ = r.registry.dispatch(KEY, "HANG")
    waiting, _ = r.registry.dispatch(KEY, "second STALL:1")
    r.advance(1)
    result = r.registry.force_clear(KEY, owner, "operator: stuck")
    released = r.of_kind("released")[0]
    assert result == {
        "cleared": True, "sessionKey": KEY, "runId": owner, "phase": "aborted",
        "seq": released["seq"],
    }  # fmt: skip
    ended = r.of_kind("ended")[0]
    assert (ended["result"], ended["code"]) == ("aborted", "aborted_by_user")
    assert released["how"] == "force_clear"
    assert released["detail"] == "operator: stuck"
    assert r.of_kind("waiter.resolved")[0]["outcome"] == "admitted"
    assert r.registry.entry(KEY).run_id == waiting  # type: ignore[union-attr]


def test_force_clear_refuses_a_stale_expect_run_id_and_shows_the_current_owner() -> None:
    r = rig("2026.9")
    owner, _ = r.registry.dispatch(KEY, "HANG")
    result = r.registry.force_clear(KEY, "some-older-run", "operator")
    assert (result["cleared"], result["reason"]) == (False, "owner_changed")
    assert result["current"]["runId"] == owner
    assert r.registry.entry(KEY).run_id == owner  # type: ignore[union-attr]
    assert r.of_kind("released") == []


def test_force_clear_of_an_unlocked_session_says_not_locked() -> None:
    r = rig("2026.9")
    result = r.registry.force_clear(KEY, "run-1", "operator")
    assert result == {"cleared": False, "sessionKey": KEY, "reason": "not_locked", "current": None}


def test_requeue_dispatches_new_keys_and_dedupes_keys_seen_before() -> None:
    r = rig("2026.9")
    r.registry.dispatch(KEY, "original", idempotency_key="k-1")
    results = r.registry.requeue(KEY, [("original", "k-1"), ("lost one", "k-2"), ("again", "k-2")])
    assert [(x["idempotencyKey"], x["status"]) for x in results] == [
        ("k-1", "duplicate"), ("k-2", "started"), ("k-2", "duplicate"),
    ]  # fmt: skip
    added = r.of_kind("waiter.added")
    assert [w["messageId"] for w in added] == ["k-2"]


def test_a_repeated_idempotency_key_is_not_run_twice() -> None:
    r = rig("2026.9")
    assert r.registry.dispatch(KEY, "hi STALL:1", idempotency_key="k") == ("k", "started")
    assert r.registry.dispatch(KEY, "hi STALL:1", idempotency_key="k") == ("k", "in_flight")
    r.advance(2)
    assert r.registry.dispatch(KEY, "hi STALL:1", idempotency_key="k") == ("k", "ok")
    assert len(r.of_kind("acquired")) == 1


def test_the_snapshot_is_exact_at_its_seq() -> None:
    r = rig("2026.9")
    owner, _ = r.registry.dispatch(KEY, "HANG")
    r.registry.dispatch(KEY, "second")
    r.advance(1)
    snap = r.registry.snapshot()
    assert snap["seq"] == r.changes[-1]["seq"]
    (entry,) = snap["entries"]
    assert (entry["runId"], entry["phase"], entry["result"]) == (owner, "running", None)
    assert [w["text"] for w in entry["waiters"]] == ["second"]
    assert snap["sessions"] == {KEY: "running"}
