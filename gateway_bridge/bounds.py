"""What a value from a gateway may be, so one bad value costs only its own event.

A gateway is trusted to report its registry, not to produce values the store
can hold: ``Infinity``, a timestamp in the year 5000, a 300-character run id
or ``timeoutMs=10**20`` once sank a whole batch in the database. Every event,
whichever mode produced it, passes ``bounded`` before ingest writes it:

- **Rejected** (``OutOfBounds``): an integer outside what the gateway's
  JavaScript counts exactly (0..2**53 - 1), an identifier longer than its
  column. Truncating an identifier would make two runs one; a sequence number
  or a restart delay cannot be guessed.
- **Clamped**: a timestamp that is not finite, is before 2020 or more than
  ``MAX_FUTURE_S`` after Runboard received it becomes the receive time. The
  event is real; only the gateway's clock (or its unit) is wrong, and the
  receive time is the best estimate we have: lock ages then count from when
  we saw it, so time-based flags still fire. A waiter timeout beyond
  ``MAX_TIMEOUT_MS`` means "waits forever" (``None``), which it does for any
  operator.
- **Cut**: free text (versions, codes, previews) to its column; a NUL or a
  lone surrogate in text becomes U+FFFD (PostgreSQL's text and jsonb refuse
  NUL, no database encodes a lone surrogate). In an identifier it is refused.

A snapshot is bounded entry by entry: a bad entry is left out and its
session named in ``unread_keys``, so the store leaves that session as it was.
The column limits are declared here because this package has no Django;
``tests/hostile/test_bounds.py`` checks each against the models.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from gateway_bridge import events as ev

# 2020-01-01T00:00:00Z: no registry event of any supported gateway is older.
EARLIEST_AT = 1_577_836_800.0
# How far ahead of Runboard's clock a gateway's clock may run before we stop believing it.
MAX_FUTURE_S = 300.0
# The largest integer a JavaScript gateway can send exactly; fits a 64-bit column.
MAX_INT = 2**53 - 1
# One year: a longer waiter timeout is a forever wait in practice.
MAX_TIMEOUT_MS = 365 * 24 * 3600 * 1000

# Identifier fields -> the column each lands in (adminpanel.models max_length).
ID_LIMITS: dict[str, int] = {
    "session_key": 512,
    "run_id": 128,
    "boot_id": 128,
    "session_id": 128,
    "waiter_id": 128,
    "blocking_run_id": 128,
    "message_id": 128,
    "phase": 40,
    "turn_kind": 32,
}
# Free-text fields -> the column they are cut to (a longer value is cut, not rejected).
TEXT_LIMITS: dict[str, int] = {
    "version": 64,
    "profile": 64,
    "code": 64,
    "message_preview": 200,
}
# Where each limit is checked against the models (model label, field name).
COLUMNS: dict[str, tuple[str, str]] = {
    "session_key": ("Session", "session_key"),
    "run_id": ("Run", "run_id"),
    "boot_id": ("TimelineEvent", "boot_id"),
    "session_id": ("Session", "session_id"),
    "waiter_id": ("Waiter", "waiter_id"),
    "blocking_run_id": ("Waiter", "blocking_run_id"),
    "message_id": ("Run", "message_id"),
    "phase": ("Session", "phase"),
    "turn_kind": ("Run", "turn_kind"),
    "version": ("Gateway", "version"),
    "profile": ("Gateway", "profile"),
    "code": ("Session", "result_code"),
    "message_preview": ("Run", "preview"),
}
TIME_FIELDS = ("at", "started_at", "last_activity_at", "since")
INT_FIELDS = ("seq", "restart_expected_ms")


class OutOfBounds(ValueError):
    """A value no store column can hold honestly. ``str()`` names the field and why."""


def plausible_at(value: float, received_at: float) -> float:
    """The timestamp, or the receive time when the gateway's clock is not believable."""
    # NaN fails both comparisons, infinities one: both become the receive time.
    if EARLIEST_AT <= value <= received_at + MAX_FUTURE_S:
        return value
    return received_at


def check_int(name: str, value: int | None) -> None:
    if value is not None and not 0 <= value <= MAX_INT:
        raise OutOfBounds(f"field {name!r} is {_short(value)}, outside 0..{MAX_INT}")


def timeout_ms(value: int | None) -> int | None:
    """A waiter's timeout; beyond a year it is a wait without one."""
    if value is None or value > MAX_TIMEOUT_MS:
        return None
    check_int("timeout_ms", value)
    return value


def check_id(name: str, value: str) -> None:
    limit = ID_LIMITS[name]
    if len(value) > limit:
        raise OutOfBounds(f"field {name!r} is longer than {limit} characters")
    if clean_text(value) != value:
        raise OutOfBounds(f"field {name!r} holds a NUL or an unpaired surrogate")


def clean_text(value: str) -> str:
    """``value`` with what no database stores (NUL, lone surrogates) as U+FFFD."""
    if value.isascii():
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        value = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in value)
    return value.replace("\x00", "\ufffd")


def bounded(event: ev.RegistryEvent) -> ev.RegistryEvent:
    """``event`` with implausible times clamped and text cut; raises OutOfBounds."""
    received_at = event.received_at
    if not math.isfinite(received_at):  # our own clock; never the gateway's
        raise OutOfBounds(f"received_at is {received_at!r}")
    changes: dict[str, Any] = {}
    earliest, latest = EARLIEST_AT, received_at + MAX_FUTURE_S
    for name, how in _plan(type(event)):
        value = getattr(event, name)
        if how == _TIME:
            # NaN fails both comparisons, infinities one: all become the receive time.
            if value is not None and not earliest <= value <= latest:
                changes[name] = received_at
        elif how == _ID:
            if len(value) > ID_LIMITS[name] or not _clean_ascii(value):
                check_id(name, value)
        elif how == _TEXT:
            if len(value) > TEXT_LIMITS.get(name, len(value)) or not _clean_ascii(value):
                text = clean_text(value)[: TEXT_LIMITS.get(name, len(value))]
                if text != value:
                    changes[name] = text
        elif how == _INT:
            check_int(name, value)
        elif timeout_ms(value) != value:
            changes[name] = None
    if isinstance(event, ev.Snapshot):
        changes.update(_bounded_snapshot_parts(event))
    return dataclasses.replace(event, **changes) if changes else event


def _bounded_snapshot_parts(snapshot: ev.Snapshot) -> dict[str, Any]:
    """Entries and statuses one by one: a bad one is left out, the rest land."""
    entries, rejected, unread = [], list(snapshot.rejected), set(snapshot.unread_keys)
    for entry in snapshot.entries:
        try:
            entries.append(bounded_entry(entry, snapshot.received_at))
        except OutOfBounds as exc:
            rejected.append(f"entry {entry.session_key[:80]!r}: {exc}")
            unread.add(entry.session_key)
    statuses = {}
    for key, status in snapshot.session_statuses.items():
        try:
            check_id("session_key", key)
        except OutOfBounds as exc:
            rejected.append(f"a session status's key: {exc}")
        else:
            statuses[key] = clean_text(status)
    return {
        "entries": tuple(entries),
        "session_statuses": statuses,
        "rejected": tuple(rejected),
        "unread_keys": frozenset(k for k in unread if _usable_id("session_key", k)),
    }


_TIME, _ID, _TEXT, _INT, _TIMEOUT = range(5)
_PLANS: dict[type, tuple[tuple[str, int], ...]] = {}


def _plan(cls: type) -> tuple[tuple[str, int], ...]:
    """Which check each field of an event class gets, worked out once per class."""
    plan = _PLANS.get(cls)
    if plan is None:
        steps = []
        for f in dataclasses.fields(cls):
            if f.name in TIME_FIELDS:
                steps.append((f.name, _TIME))
            elif f.name in INT_FIELDS:
                steps.append((f.name, _INT))
            elif f.name == "timeout_ms":
                steps.append((f.name, _TIMEOUT))
            elif f.name in ID_LIMITS:
                steps.append((f.name, _ID))
            elif f.type in ("str", str):
                steps.append((f.name, _TEXT))
        plan = _PLANS[cls] = tuple(steps)
    return plan


def _clean_ascii(value: str) -> bool:
    """The common case, cheaply: ASCII without NUL needs nothing done."""
    return value.isascii() and "\x00" not in value


def bounded_entry(entry: ev.SnapshotEntry, received_at: float) -> ev.SnapshotEntry:
    """One snapshot entry (and its waiters) bounded like an event."""
    for name in ("session_key", "run_id", "session_id", "phase", "turn_kind"):
        check_id(name, getattr(entry, name))
    started = _optional_at(entry.started_at, received_at)
    active = _optional_at(entry.last_activity_at, received_at)
    waiters = tuple(_bounded_waiter(w, received_at) for w in entry.waiters)
    return dataclasses.replace(
        entry,
        started_at=started,
        last_activity_at=active,
        code=clean_text(entry.code)[: TEXT_LIMITS["code"]],
        result=clean_text(entry.result),
        waiters=waiters,
    )


def _bounded_waiter(w: ev.SnapshotWaiter, received_at: float) -> ev.SnapshotWaiter:
    for name in ("waiter_id", "message_id", "turn_kind"):
        check_id(name, getattr(w, name))
    return dataclasses.replace(
        w,
        since=plausible_at(w.since, received_at),
        timeout_ms=timeout_ms(w.timeout_ms),
        message_preview=clean_text(w.message_preview)[: TEXT_LIMITS["message_preview"]],
        message_text=clean_text(w.message_text),
    )


def _usable_id(name: str, value: str) -> bool:
    try:
        check_id(name, value)
    except OutOfBounds:
        return False
    return True


def _optional_at(value: float | None, received_at: float) -> float | None:
    if value is None:
        return None
    return plausible_at(value, received_at)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."
