"""Gateway build profiles: which OpenClaw reply-run semantics the sim follows.

Each profile is one OpenClaw build's behaviour (see
``/work/shared/reference/openclaw-internals.md`` §1 and the two seed reports);
``Knobs`` holds every time constant and fault rate, overridable per gateway so
tests can shrink a 60 s settle to 0.3 s.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    version: str
    protocol: int
    # 2026.9: visible waits are bounded slices that re-check staleness.
    visible_wait_bounded: bool
    # 2026.9 (seen on 2026.9.6): a message for a busy session goes to the session's
    # follow-up queue (unbounded, no registry wait) and later runs as its own
    # ``queued_followup`` operation.
    busy_message_queues_followup: bool
    # 2026.5.x: registry waiters (waitForIdle) carry no message: the registry reports
    # ``messageId`` = the waiter id and an empty text (seen on 2026.5.28).
    waiters_carry_message: bool
    # 2026.5.28: each visible turn is followed by an empty operation (its follow-up
    # drain): acquired, completed and released within milliseconds, no phase.
    empty_drain_operation: bool
    # 2026.9 (seen on 2026.9.6): running -> waiting_for_global_lane -> running.
    global_lane_phase: bool
    # 2026.9 (seen on 2026.9.6): a force-cleared turn leaves an assistant message
    # "OpenClaw couldn't produce or deliver a reply..." in chat.history.
    clear_leaves_reply: bool
    # hello-ok's server carries a bootId (2026.9.6 does, 2026.5.28 does not).
    hello_boot_id: bool
    # 2026.5.3 (seed 2): the follow-up drain after a completed run races the clear.
    drain_races_clear: bool
    # 2026.9: startedAtMs / lastActivityAtMs are tracked and shown in snapshots.
    tracks_timestamps: bool
    # 2026.9: forced release after a terminal result, stale takeover.
    self_heals: bool
    # 2026.5.x transcripts get the user message only when the turn completes, so
    # an aborted hung turn's message is missing from chat.history (seen on 5.28).
    history_on_completion: bool


PROFILES: dict[str, Profile] = {
    "2026.5.28": Profile(
        name="2026.5.28",
        version="2026.5.28",
        protocol=4,
        visible_wait_bounded=False,
        busy_message_queues_followup=False,
        waiters_carry_message=False,
        empty_drain_operation=True,
        global_lane_phase=False,
        clear_leaves_reply=False,
        hello_boot_id=False,
        drain_races_clear=False,
        tracks_timestamps=False,
        self_heals=False,
        history_on_completion=True,
    ),
    "2026.5.3": Profile(
        name="2026.5.3",
        version="2026.5.3",
        protocol=3,
        visible_wait_bounded=False,
        busy_message_queues_followup=False,
        waiters_carry_message=False,
        empty_drain_operation=False,
        global_lane_phase=False,
        clear_leaves_reply=False,
        hello_boot_id=False,
        drain_races_clear=True,
        tracks_timestamps=False,
        self_heals=False,
        history_on_completion=True,
    ),
    "2026.9": Profile(
        name="2026.9",
        version="2026.9.6",
        protocol=4,
        visible_wait_bounded=True,
        busy_message_queues_followup=True,
        waiters_carry_message=True,
        empty_drain_operation=False,
        global_lane_phase=True,
        clear_leaves_reply=True,
        hello_boot_id=True,
        drain_races_clear=False,
        tracks_timestamps=True,
        self_heals=True,
        history_on_completion=False,
    ),
}


@dataclass(frozen=True, slots=True)
class Knobs:
    """Time constants (seconds) and rates. Defaults are OpenClaw's own values."""

    # Self-healing (2026.9 only).
    terminal_settle_s: float = 60.0
    stale_takeover_s: float = 600.0
    stale_takeover_tool_s: float = 900.0
    wait_slice_s: float = 15.0
    # queued_followup waits are bounded on every build (REPLY_RUN_IDLE_SETTLE_TIMEOUT_MS).
    followup_wait_s: float = 15.0
    # The model backend.
    turn_median_s: float = 0.8
    turn_cap_s: float = 5.0
    activity_interval_s: float = 0.5
    queue_delay_s: float = 0.02
    phase_step_s: float = 0.05
    compaction_rate: float = 0.05
    memory_flush_rate: float = 0.05
    # How long an owner takes to resume after its backend was cancelled.
    cancel_settle_s: float = 0.05
    # Seed 1: a completed run that never reaches its clear step.
    leak_after_complete_rate: float = 0.0
    # Fault injection towards registry subscribers (for testing the bridge).
    duplicate_rate: float = 0.0
    reorder_window: int = 0
    garbage_rate: float = 0.0

    @classmethod
    def from_kwargs(cls, **knobs: float) -> Knobs:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(knobs) - known)
        if unknown:
            raise TypeError(f"unknown simulated gateway knob(s): {', '.join(unknown)}")
        return cls(**knobs)  # type: ignore[arg-type]


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown gateway profile {name!r}; known: {', '.join(PROFILES)}"
        ) from None
