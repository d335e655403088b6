"""Wire payloads of docs/protocol.md §2 -> ``gateway_bridge.events`` dataclasses.

Pure functions, no I/O. Validation is strict: a payload that does not follow
the protocol raises ``DecodeError`` naming the field. Values that follow it
but no store column can hold are bounded by ``gateway_bridge.bounds``
(clamped, cut or refused). ``decode_or_reject`` never raises: a bad event
becomes a ``FrameRejected`` that keeps its place in the sequence when its
``bootId`` and ``seq`` were readable, so the events after it land at once; a
snapshot leaves a bad entry out (``Snapshot.rejected``) instead of failing
whole. Milliseconds on the wire become seconds here.

Two deliberate leniencies, both for newer gateway builds: ``phase`` and
``turnKind`` accept any short identifier (OpenClaw adds phases such as
``waiting_for_global_lane`` between releases, and refusing them would refuse
every snapshot of such a gateway). Values the store branches on (results,
release kinds, waiter outcomes, skip reasons, session statuses) must be known.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

from gateway_bridge import bounds
from gateway_bridge import events as ev

MAX_KEY_CHARS = 512
MAX_PREVIEW_CHARS = 120
MAX_TEXT_CHARS = 8000
MAX_NAME_CHARS = 64
MAX_NOTE_CHARS = 512
MAX_SNAPSHOT_ENTRIES = 100_000
MAX_WAITERS_PER_ENTRY = 10_000

# Release kinds a gateway can report; ``restart`` is only ever inferred by the store.
WIRE_RELEASE_HOWS: tuple[str, ...] = ("normal", "forced_settle", "stale_takeover", "force_clear")


class DecodeError(ValueError):
    """A registry payload that does not follow docs/protocol.md. ``str()`` names the field."""


class _Fields:
    """Typed reads from one JSON object, with errors that say where the field lives."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise DecodeError(f"{where} must be an object, not {_json_type(data)}")
        self.data: dict[str, Any] = data
        self.where = where

    def _fail(self, need: str, name: str) -> DecodeError:
        return DecodeError(f"{self.where} needs {need} field {name!r}")

    def key(self, name: str) -> str:
        """An identifier (session key, run id, ...): non-empty, at most MAX_KEY_CHARS."""
        value = self.data.get(name)
        if not isinstance(value, str) or not value:
            raise self._fail("string", name)
        if len(value) > MAX_KEY_CHARS:
            raise DecodeError(
                f"{self.where} field {name!r} is longer than {MAX_KEY_CHARS} characters"
            )
        return value

    def optional_key(self, name: str) -> str:
        if self.data.get(name) in (None, ""):
            return ""
        return self.key(name)

    def text(self, name: str, cap: int) -> str:
        """Free text, may be empty; cut at ``cap`` (the gateway already caps it; we insist)."""
        value = self.data.get(name)
        if not isinstance(value, str):
            raise self._fail("string", name)
        return value[:cap]

    def optional_text(self, name: str, cap: int) -> str:
        if self.data.get(name) is None:
            return ""
        return self.text(name, cap)

    def name(self, name: str) -> str:
        """A short identifier-like value such as a phase."""
        value = self.key(name)
        if len(value) > MAX_NAME_CHARS:
            raise DecodeError(
                f"{self.where} field {name!r} is longer than {MAX_NAME_CHARS} characters"
            )
        return value

    def choice(self, name: str, allowed: tuple[str, ...]) -> str:
        value = self.data.get(name)
        if not isinstance(value, str):
            raise self._fail("string", name)
        if value not in allowed:
            raise DecodeError(
                f"{self.where} field {name!r} is {value[:MAX_NAME_CHARS]!r}, "
                f"not one of {', '.join(allowed)}"
            )
        return value

    def integer(self, name: str) -> int:
        value = self.data.get(name)
        if not _is_int(value) or value < 0:
            raise self._fail("non-negative integer", name)
        return int(value)

    def millis(self, name: str) -> float:
        """A wire timestamp (ms since the epoch) as seconds."""
        value = self.data.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self._fail("millisecond timestamp", name)
        # Any number: gateway_bridge.bounds makes an unbelievable one the receive time.
        return value / 1000.0 if isinstance(value, float) or abs(value) < 2**1000 else math.inf

    def optional_millis(self, name: str) -> float | None:
        if self.data.get(name) is None:
            return None
        return self.millis(name)

    def nullable_integer(self, name: str) -> int | None:
        """A field that must be present; ``null`` is a meaningful value (e.g. no timeout)."""
        if name not in self.data:
            raise self._fail("integer or null", name)
        if self.data[name] is None:
            return None
        return self.integer(name)

    def optional_integer(self, name: str) -> int | None:
        if self.data.get(name) is None:
            return None
        return self.integer(name)

    def array(self, name: str, limit: int) -> list[Any]:
        value = self.data.get(name)
        if not isinstance(value, list):
            raise self._fail("array", name)
        if len(value) > limit:
            raise DecodeError(f"{self.where} field {name!r} has more than {limit} items")
        return value


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


# --- registry events ----------------------------------------------------------


def _common(gateway: str, f: _Fields, received_at: float) -> dict[str, Any]:
    return {
        "gateway": gateway,
        "boot_id": f.key("bootId"),
        "seq": f.integer("seq"),
        "at": f.millis("ts"),
        "received_at": received_at,
    }


def _started(f: _Fields) -> dict[str, Any]:
    return {
        "version": f.text("version", MAX_NOTE_CHARS),
        "profile": f.text("profile", MAX_NOTE_CHARS),
    }


def _stopping(f: _Fields) -> dict[str, Any]:
    return {
        "reason": f.text("reason", MAX_NOTE_CHARS),
        "restart_expected_ms": f.optional_integer("restartExpectedMs"),
    }


def _acquired(f: _Fields) -> dict[str, Any]:
    return {
        "session_key": f.key("sessionKey"),
        "run_id": f.key("runId"),
        "session_id": f.key("sessionId"),
        "phase": f.name("phase"),
        "turn_kind": f.name("turnKind"),
        "message_id": f.optional_key("messageId"),
        "message_preview": f.optional_text("preview", MAX_PREVIEW_CHARS),
    }


def _phase(f: _Fields) -> dict[str, Any]:
    return {"session_key": f.key("sessionKey"), "run_id": f.key("runId"), "phase": f.name("phase")}


def _activity(f: _Fields) -> dict[str, Any]:
    return {
        "session_key": f.key("sessionKey"),
        "run_id": f.key("runId"),
        "activity": f.text("activity", MAX_NOTE_CHARS),
    }


def _ended(f: _Fields) -> dict[str, Any]:
    return {
        "session_key": f.key("sessionKey"),
        "run_id": f.key("runId"),
        "result": f.choice("result", ev.RUN_RESULTS),
        "code": f.optional_text("code", MAX_NAME_CHARS),
    }


def _released(f: _Fields) -> dict[str, Any]:
    return {
        "session_key": f.key("sessionKey"),
        "run_id": f.key("runId"),
        "how": f.choice("how", WIRE_RELEASE_HOWS),
        "detail": f.optional_text("detail", MAX_NOTE_CHARS),
    }


def _message_fields(f: _Fields) -> dict[str, Any]:
    """The lost-or-waiting message a waiter, skip or drain failure carries (for requeue)."""
    return {
        "message_id": f.key("messageId"),
        "message_preview": f.text("preview", MAX_PREVIEW_CHARS),
        "message_text": f.text("text", MAX_TEXT_CHARS),
    }


def _waiter_added(f: _Fields) -> dict[str, Any]:
    return {
        "session_key": f.key("sessionKey"),
        "waiter_id": f.key("waiterId"),
        "timeout_ms": f.nullable_integer("timeoutMs"),
        "turn_kind": f.name("turnKind"),
        "blocking_run_id": f.key("blockingRunId"),
        **_message_fields(f),
    }


def _waiter_resolved(f: _Fields) -> dict[str, Any]:
    return {
        "session_key": f.key("sessionKey"),
        "waiter_id": f.key("waiterId"),
        "outcome": f.choice("outcome", ev.WAITER_OUTCOMES),
    }


def _skipped(f: _Fields) -> dict[str, Any]:
    return {
        "session_key": f.key("sessionKey"),
        "reason": f.choice("reason", ev.SKIP_REASONS),
        "blocking_run_id": f.optional_key("blockingRunId"),
        **_message_fields(f),
    }


def _drain_failed(f: _Fields) -> dict[str, Any]:
    return {
        "session_key": f.key("sessionKey"),
        "error": f.text("error", MAX_NOTE_CHARS),
        "message": f.text("message", MAX_TEXT_CHARS),
        "blocking_run_id": f.optional_key("blockingRunId"),
        **_message_fields(f),
    }


def _session_status(f: _Fields) -> dict[str, Any]:
    return {
        "session_key": f.key("sessionKey"),
        "status": f.choice("status", ev.SESSION_STATUSES),
        "session_id": f.optional_key("sessionId"),
    }


_KINDS: Mapping[str, tuple[type[ev.RegistryEvent], Callable[[_Fields], dict[str, Any]]]] = {
    "started": (ev.GatewayStarted, _started),
    "stopping": (ev.GatewayStopping, _stopping),
    "acquired": (ev.LockAcquired, _acquired),
    "phase": (ev.PhaseChanged, _phase),
    "activity": (ev.RunActivity, _activity),
    "ended": (ev.RunEnded, _ended),
    "released": (ev.LockReleased, _released),
    "waiter.added": (ev.WaiterAdded, _waiter_added),
    "waiter.resolved": (ev.WaiterResolved, _waiter_resolved),
    "skipped": (ev.DispatchSkipped, _skipped),
    "drain.failed": (ev.FollowupDrainFailed, _drain_failed),
    "session.status": (ev.SessionStatusChanged, _session_status),
}
WIRE_KINDS: tuple[str, ...] = tuple(_KINDS)


def decode_registry_event(gateway: str, payload: object, received_at: float) -> ev.RegistryEvent:
    """One ``runboard.registry`` event payload -> its normalized event."""
    kind = _Fields(payload, "registry event").data.get("kind")
    if not isinstance(kind, str) or not kind:
        raise DecodeError("registry event needs string field 'kind'")
    if kind not in _KINDS:
        raise DecodeError(f"registry event kind {kind[:MAX_NAME_CHARS]!r} is unknown")
    event_type, read_fields = _KINDS[kind]
    f = _Fields(payload, f"registry event {kind!r}")
    event = event_type(**_common(gateway, f, received_at), **read_fields(f))
    try:
        return bounds.bounded(event)
    except bounds.OutOfBounds as exc:
        raise DecodeError(f"registry event {kind!r} {exc}") from None


def decode_or_reject(gateway: str, payload: object, received_at: float) -> ev.RegistryEvent:
    """Like ``decode_registry_event``, but a bad payload becomes a ``FrameRejected``."""
    try:
        return decode_registry_event(gateway, payload, received_at)
    except DecodeError as exc:
        return rejected_frame(gateway, payload, received_at, str(exc))


def rejected_frame(
    gateway: str, payload: object, received_at: float, reason: str
) -> ev.FrameRejected:
    """The note a bad frame leaves: in sequence when its bootId and seq are usable."""
    data = payload if isinstance(payload, dict) else {}
    boot_id, seq, kind = data.get("bootId"), data.get("seq"), data.get("kind")
    placed = (
        isinstance(boot_id, str)
        and 0 < len(boot_id) <= bounds.ID_LIMITS["boot_id"]
        and _is_int(seq)
        and 0 < seq <= bounds.MAX_INT
    )
    return ev.FrameRejected(
        gateway=gateway,
        boot_id=boot_id if placed else "",  # type: ignore[arg-type]
        seq=seq if placed else 0,  # type: ignore[arg-type]
        at=received_at,
        received_at=received_at,
        reason=reason[:MAX_NOTE_CHARS],
        frame_kind=kind[:MAX_NAME_CHARS] if isinstance(kind, str) else "",
    )


# --- snapshots ----------------------------------------------------------------


def decode_snapshot(gateway: str, payload: object, received_at: float) -> ev.Snapshot:
    """A ``runboard.registry.snapshot`` payload -> ``events.Snapshot``."""
    f = _Fields(payload, "snapshot")
    entries, rejected, unread = [], [], set()
    for i, raw in enumerate(f.array("entries", MAX_SNAPSHOT_ENTRIES)):
        try:
            entries.append(decode_snapshot_entry(raw, f"snapshot entries[{i}]"))
        except DecodeError as exc:
            rejected.append(str(exc))
            key = raw.get("sessionKey") if isinstance(raw, dict) else None
            if isinstance(key, str) and key:
                unread.add(key)
    statuses = _session_statuses(f.data.get("sessions"), rejected)
    snapshot = ev.Snapshot(
        **_common(gateway, f, received_at),
        entries=tuple(entries),
        session_statuses=statuses,
        version=f.text("version", MAX_NOTE_CHARS),
        profile=f.optional_text("profile", MAX_NOTE_CHARS),
        rejected=tuple(rejected),
        unread_keys=frozenset(unread),
    )
    try:
        return bounds.bounded(snapshot)  # type: ignore[return-value]
    except bounds.OutOfBounds as exc:
        raise DecodeError(f"snapshot {exc}") from None


def decode_snapshot_entry(raw: object, where: str = "entry") -> ev.SnapshotEntry:
    """One live registry entry, as in a snapshot or a refused forceClear's ``current``."""
    f = _Fields(raw, where)
    result, code = _entry_result(f.data.get("result"), where)
    waiters = tuple(
        _snapshot_waiter(w, f"{where} waiters[{i}]")
        for i, w in enumerate(f.array("waiters", MAX_WAITERS_PER_ENTRY))
    )
    return ev.SnapshotEntry(
        session_key=f.key("sessionKey"),
        run_id=f.key("runId"),
        session_id=f.key("sessionId"),
        phase=f.name("phase"),
        result=result,
        code=code,
        started_at=f.optional_millis("startedAtMs"),
        last_activity_at=f.optional_millis("lastActivityAtMs"),
        turn_kind=f.name("turnKind"),
        waiters=waiters,
    )


def _entry_result(raw: object, where: str) -> tuple[str, str]:
    """``null`` while running, else ``{"kind": ..., "code": ...}``: terminal but still held."""
    if raw is None:
        return "", ""
    f = _Fields(raw, f"{where} result")
    return f.choice("kind", ev.RUN_RESULTS), f.optional_text("code", MAX_NAME_CHARS)


def _snapshot_waiter(raw: object, where: str) -> ev.SnapshotWaiter:
    f = _Fields(raw, where)
    return ev.SnapshotWaiter(
        waiter_id=f.key("waiterId"),
        since=f.millis("sinceMs"),
        timeout_ms=f.nullable_integer("timeoutMs"),
        turn_kind=f.name("turnKind"),
        message_id=f.key("messageId"),
        message_preview=f.text("preview", MAX_PREVIEW_CHARS),
        message_text=f.text("text", MAX_TEXT_CHARS),
    )


def _session_statuses(raw: object, rejected: list[str]) -> dict[str, str]:
    """Each known session's status; a bad one is left out with its reason in ``rejected``."""
    if not isinstance(raw, dict):
        raise DecodeError("snapshot needs object field 'sessions'")
    statuses: dict[str, str] = {}
    for key, status in raw.items():
        if not key or len(key) > MAX_KEY_CHARS:
            rejected.append(f"snapshot field 'sessions' has a key longer than {MAX_KEY_CHARS}")
        elif status not in ev.SESSION_STATUSES:
            rejected.append(
                f"snapshot field 'sessions' gives {key[:80]!r} status {str(status)[:40]!r}, "
                f"not one of {', '.join(ev.SESSION_STATUSES)}"
            )
        else:
            statuses[key] = status
    return statuses
