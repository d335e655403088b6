"""Typed, normalized registry events: what the bridge hands to the store.

Every event carries where it came from (``gateway``), the gateway process it
came from (``boot_id``: a new one each gateway start), its per-gateway
sequence number within that boot (``seq``, strictly increasing from 1), the
gateway's own timestamp (``at``) and the time Runboard received it
(``received_at``). Times are seconds since the epoch, as floats.

The store is idempotent on ``(gateway, boot_id, seq)``; see
``docs/protocol.md`` for the wire form these are decoded from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Phase = Literal[
    "queued",
    "preflight_compacting",
    "memory_flushing",
    "running",
    "waiting_for_deferred_maintenance",
    "waiting_for_global_lane",
    "completed",
    "failed",
    "aborted",
]
PHASES: tuple[str, ...] = (
    "queued",
    "preflight_compacting",
    "memory_flushing",
    "running",
    "waiting_for_deferred_maintenance",
    "waiting_for_global_lane",
    "completed",
    "failed",
    "aborted",
)
TERMINAL_PHASES: frozenset[str] = frozenset({"completed", "failed", "aborted"})

RunResult = Literal["completed", "failed", "aborted"]
RUN_RESULTS: tuple[str, ...] = ("completed", "failed", "aborted")

# How a lock went away. ``restart`` is inferred by the store when a gateway
# comes back with a new boot id while it still held the lock.
ReleaseHow = Literal["normal", "forced_settle", "stale_takeover", "force_clear", "restart"]
RELEASE_HOWS: tuple[str, ...] = (
    "normal",
    "forced_settle",
    "stale_takeover",
    "force_clear",
    "restart",
)

TurnKind = Literal["visible", "heartbeat", "queued_followup", "control_abort"]
TURN_KINDS: tuple[str, ...] = ("visible", "heartbeat", "queued_followup", "control_abort")

WaiterOutcome = Literal["admitted", "timed_out", "aborted", "cleared"]
WAITER_OUTCOMES: tuple[str, ...] = ("admitted", "timed_out", "aborted", "cleared")

SkipReason = Literal["active-run", "aborted"]
SKIP_REASONS: tuple[str, ...] = ("active-run", "aborted")

SessionStatus = Literal["running", "done", "failed", "killed", "timeout"]
SESSION_STATUSES: tuple[str, ...] = ("running", "done", "failed", "killed", "timeout")


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryEvent:
    gateway: str
    boot_id: str
    seq: int
    at: float
    received_at: float

    kind = "event"


@dataclass(frozen=True, slots=True, kw_only=True)
class LockAcquired(RegistryEvent):
    """A reply operation was created for a session key: the key is now locked."""

    session_key: str
    run_id: str
    session_id: str = ""
    phase: str = "queued"
    turn_kind: str = "visible"
    message_id: str = ""
    message_preview: str = ""

    kind = "lock_acquired"


@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseChanged(RegistryEvent):
    session_key: str
    run_id: str
    phase: str

    kind = "phase_changed"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunActivity(RegistryEvent):
    """Progress inside a phase (a model delta, a tool call): refreshes last progress."""

    session_key: str
    run_id: str
    activity: str = ""

    kind = "run_activity"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunEnded(RegistryEvent):
    """The operation reached a terminal result. The lock may still be held."""

    session_key: str
    run_id: str
    result: str
    code: str = ""

    kind = "run_ended"


@dataclass(frozen=True, slots=True, kw_only=True)
class LockReleased(RegistryEvent):
    session_key: str
    run_id: str
    how: str = "normal"
    detail: str = ""

    kind = "lock_released"


@dataclass(frozen=True, slots=True, kw_only=True)
class WaiterAdded(RegistryEvent):
    """A message is waiting for a session's lock (``waitForIdle``)."""

    session_key: str
    waiter_id: str
    timeout_ms: int | None = None
    turn_kind: str = "visible"
    blocking_run_id: str = ""
    message_id: str = ""
    message_preview: str = ""
    message_text: str = ""

    kind = "waiter_added"

    @property
    def has_timeout(self) -> bool:
        return self.timeout_ms is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class WaiterResolved(RegistryEvent):
    session_key: str
    waiter_id: str
    outcome: str

    kind = "waiter_resolved"


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchSkipped(RegistryEvent):
    """Admission gave up on a message: it was not and will not be answered."""

    session_key: str
    reason: str
    blocking_run_id: str = ""
    message_id: str = ""
    message_preview: str = ""
    message_text: str = ""

    kind = "dispatch_skipped"


@dataclass(frozen=True, slots=True, kw_only=True)
class FollowupDrainFailed(RegistryEvent):
    """``followup queue drain failed for <key>: ReplyRunAlreadyActiveError: ...``"""

    session_key: str
    error: str = "ReplyRunAlreadyActiveError"
    message: str = ""
    blocking_run_id: str = ""
    message_id: str = ""
    message_preview: str = ""
    message_text: str = ""

    kind = "followup_drain_failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStatusChanged(RegistryEvent):
    """The gateway's persisted session store changed a session's status."""

    session_key: str
    status: str
    session_id: str = ""

    kind = "session_status_changed"


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayStarted(RegistryEvent):
    """First event of every boot; also synthesized on each (re)connect."""

    version: str = ""
    profile: str = ""

    kind = "gateway_started"


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayStopping(RegistryEvent):
    reason: str = ""
    restart_expected_ms: int | None = None

    kind = "gateway_stopping"


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotWaiter:
    waiter_id: str
    since: float
    timeout_ms: int | None = None
    turn_kind: str = "visible"
    message_id: str = ""
    message_preview: str = ""
    message_text: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotEntry:
    """One live registry entry: a locked session key."""

    session_key: str
    run_id: str
    session_id: str = ""
    phase: str = "queued"
    result: str = ""
    code: str = ""
    started_at: float | None = None
    last_activity_at: float | None = None
    turn_kind: str = "visible"
    waiters: tuple[SnapshotWaiter, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot(RegistryEvent):
    """The exact registry at ``seq``: every live entry and every known session's status.

    Anything the store holds as locked for this gateway that is not in
    ``entries`` was released while Runboard was not looking.
    """

    entries: tuple[SnapshotEntry, ...] = ()
    session_statuses: dict[str, str] = field(default_factory=dict)
    version: str = ""
    profile: str = ""
    # Entries left out because a value was unusable (gateway_bridge.bounds), and the
    # session keys they named: the store leaves those sessions as they were.
    rejected: tuple[str, ...] = ()
    unread_keys: frozenset[str] = frozenset()

    kind = "snapshot"


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameRejected(RegistryEvent):
    """A registry frame with a value the store cannot hold: kept as a note, not applied.

    When its ``boot_id`` and ``seq`` were readable it takes its place in the
    sequence (the events after it need not wait for a snapshot); otherwise
    ``boot_id`` is empty and ingest only counts it.
    """

    reason: str = ""
    frame_kind: str = ""

    kind = "frame_rejected"


EVENT_TYPES: tuple[type[RegistryEvent], ...] = (
    LockAcquired,
    PhaseChanged,
    RunActivity,
    RunEnded,
    LockReleased,
    WaiterAdded,
    WaiterResolved,
    DispatchSkipped,
    FollowupDrainFailed,
    SessionStatusChanged,
    GatewayStarted,
    GatewayStopping,
    Snapshot,
    FrameRejected,
)
EVENTS_BY_KIND: dict[str, type[RegistryEvent]] = {t.kind: t for t in EVENT_TYPES}
