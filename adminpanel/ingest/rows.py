"""Plain in-memory copies of the rows one batch works on, and which fields are written.

A session row is built from ``Session._meta``: its attributes are the model's
columns (``id``, ``gateway_id``, ``session_key`` …), so a column added to the
model is loaded, compared and written back by ingest without a second list.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, make_dataclass
from typing import TYPE_CHECKING, Any

from adminpanel.models import Session

# Identify the row; ingest never writes them back.
SESSION_KEYS = ("id", "gateway", "session_key")
# Written by the flag writer after the rules ran, not with the rest of the row.
SESSION_FLAG_SUMMARY = ("flag_count", "worst_severity")

# Field names as the ORM knows them (``gateway``), and as attributes (``gateway_id``).
SESSION_LOAD = tuple(f.name for f in Session._meta.concrete_fields)
SESSION_ATTRS = tuple(f.attname for f in Session._meta.concrete_fields)
_written = [
    f
    for f in Session._meta.concrete_fields
    if f.name not in SESSION_KEYS and f.name not in SESSION_FLAG_SUMMARY
]
SESSION_WRITE = tuple(f.name for f in _written)
SESSION_WRITE_ATTRS = tuple(f.attname for f in _written)

if TYPE_CHECKING:
    # Built at run time from the model; attributes are the model's columns, times as epoch seconds.
    SessionRow = Any
else:
    SessionRow = make_dataclass("SessionRow", SESSION_ATTRS, slots=True)


def unlock(s: SessionRow) -> None:
    """The session no longer holds a lock: clear what the lock said."""
    s.locked = False
    s.run_id = s.phase = s.result = s.result_code = ""
    s.lock_acquired_at = s.ended_at = None


@dataclass(slots=True)
class RunRow:
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
class WaiterRow:
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


RUN_WRITE = tuple(f.name for f in fields(RunRow))[1:]
WAITER_WRITE = tuple(f.name for f in fields(WaiterRow))[1:]


@dataclass(slots=True)
class GatewayRow:
    pk: int
    name: str
    boot_id: str
    last_seq: int
    past_boots: list[str]
    version: str
    profile: str
