"""Plain in-memory copies of the rows one batch works on, and which fields are written."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(slots=True)
class _Session:
    pk: int
    gateway_pk: int
    key: str
    session_id: str = ""
    store_status: str = ""
    store_status_at: float | None = None
    locked: bool = False
    run_id: str = ""
    phase: str = ""
    result: str = ""
    result_code: str = ""
    lock_acquired_at: float | None = None
    last_progress_at: float | None = None
    ended_at: float | None = None
    waiter_count: int = 0
    flag_count: int = 0
    worst_severity: str = ""
    updated_at: float | None = None

    def unlock(self) -> None:
        self.locked = False
        self.run_id = self.phase = self.result = self.result_code = ""
        self.lock_acquired_at = self.ended_at = None


@dataclass(slots=True)
class _Run:
    pk: int | None
    gateway_pk: int
    session_pk: int
    run_id: str
    boot_id: str = ""
    gateway_session_id: str = ""
    turn_kind: str = ""
    message_id: str = ""
    preview: str = ""
    phase: str = ""
    result: str = ""
    code: str = ""
    started_at: float | None = None
    last_activity_at: float | None = None
    ended_at: float | None = None
    released_at: float | None = None
    release_how: str = ""


@dataclass(slots=True)
class _Waiter:
    pk: int | None
    session_pk: int
    boot_id: str
    waiter_id: str
    blocking_run_id: str = ""
    timeout_ms: int | None = None
    since: float = 0.0
    turn_kind: str = ""
    message_id: str = ""
    preview: str = ""
    text: str = ""
    resolved_at: float | None = None
    outcome: str = ""


SESSION_LOAD = tuple(f.name for f in fields(_Session))
SESSION_WRITE = (
    "session_id",
    "store_status",
    "store_status_at",
    "locked",
    "run_id",
    "phase",
    "result",
    "result_code",
    "lock_acquired_at",
    "last_progress_at",
    "ended_at",
    "waiter_count",
    "updated_at",
)
RUN_WRITE = tuple(f.name for f in fields(_Run))[1:]
WAITER_WRITE = tuple(f.name for f in fields(_Waiter))[1:]


@dataclass(slots=True)
class _GatewayRow:
    pk: int
    name: str
    boot_id: str
    last_seq: int
    past_boots: list[str]
    version: str
    profile: str
