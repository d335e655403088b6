"""Observer mode: the registry inferred from what a stock OpenClaw gateway shows.

Without the companion plugin no method exposes the reply-run registry. What
the gateway does show (openclaw-internals.md §2, §3b, §5):

- ``sessions.list`` rows (and ``sessions.changed`` events): the session
  store's ``status``, ``hasActiveRun`` and, on builds that can prove it, the
  exact set ``activeRunIds`` (chat runs executing *or waiting*), ``startedAt``;
- ``agent`` events (``run_status`` phases, lifecycle start/end/error,
  assistant/tool deltas) and ``chat`` events (status/delta/final/aborted/error)
  for every run that executes. A message that waits for a held lock gets no
  event at all until it is admitted or dropped;
- ``logs.tail`` lines with the known signatures (dispatch skips, follow-up
  drain failures, forced settle, stale takeover, stuck-session diagnostics).

``ObserverTranslator`` turns those into the same normalized events
(``gateway_bridge.events``) plugin mode produces, as far as they allow. It
is pure: frames and payloads in, events out, times passed in. The socket
loop that feeds it lives in ``gateway_bridge.bridge``.

Inference rules, in short:

- the first sign of a run (an event of its own, or a new id in
  ``activeRunIds`` while the session shows no lock) is ``LockAcquired``;
  ``run_status`` phases before the model starts map to ``queued``, the rest
  to ``running``; deltas and tool calls are ``RunActivity`` (throttled);
- lifecycle end/error and chat final/aborted/error are ``RunEnded``; the lock
  is released (``LockReleased``) only when the session shows no active run
  (``activeRunIds`` without it, ``hasActiveRun`` false) or another run starts;
- another id in ``activeRunIds`` while the lock is held is a ``WaiterAdded``
  (its waiter id is the run id); it is admitted when its own events start,
  dropped when it ends without having run (a ``DispatchSkipped``, whose reason
  is settled shortly after, once the abort that usually causes it is known);
- log signatures become ``DispatchSkipped`` / ``FollowupDrainFailed`` /
  ``LockReleased(forced_settle | stale_takeover)``; a skip seen both as a
  dropped run and as a log line is reported once.

The gateway numbers none of this, so the translator numbers its events
itself under a boot id of the bridge's choosing (see ``Bridge``).
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway_bridge.events import (
    PHASES,
    SESSION_STATUSES,
    TERMINAL_PHASES,
    DispatchSkipped,
    FollowupDrainFailed,
    GatewayStopping,
    LockAcquired,
    LockReleased,
    PhaseChanged,
    RegistryEvent,
    RunActivity,
    RunEnded,
    SessionStatusChanged,
    Snapshot,
    SnapshotEntry,
    SnapshotWaiter,
    WaiterAdded,
    WaiterResolved,
)

OBSERVER_BLIND_SPOTS: tuple[str, ...] = (
    "Registry phases are inferred from run events: a run is queued until it starts and running "
    "after; compaction and memory-flush phases are not told apart.",
    "A lock whose run has ended but which the registry still holds (the leak) looks released: "
    "sessions.list reports such a session as idle.",
    "Waiting messages are seen only as extra run ids in sessions.list's activeRunIds; builds "
    "that leave activeRunIds out hide them.",
    "Wait timeouts are not reported: 2026.5.x builds are shown with no timeout, 2026.7 and "
    "later with their 15 s wait slice.",
    "Lock age counts from the first sign of the run (its first event, or startedAt in "
    "sessions.list), not from when the registry entry was created.",
    "Dispatch skips are seen only when an abort drops a waiting message or the gateway logs "
    "at debug level; a message merged into the active run is not told apart from a skip "
    "the gateway does not log.",
    "Log lines written before Runboard first connected to a gateway process are not read.",
    "Queued follow-up turns look like visible turns; only heartbeats are told apart.",
    "Force-clear cannot clear a registry entry: it aborts the run with chat.abort, which "
    "leaves an entry held on builds that leak aborted runs (2026.5.x).",
)

# run_status phases OpenClaw reports before the model starts: the registry entry is queued.
_QUEUED_RUN_STATUSES = frozenset({"preparing_workspace", "preparing_context"})
_RUNNING_RUN_STATUSES = frozenset({"starting_model", "running", "model"})
# Registry phases a build may report by name (2026.7+ waiting phases, compaction).
_NAMED_PHASES = frozenset(PHASES) - TERMINAL_PHASES
_ACTIVITY_STREAMS = frozenset(
    {"assistant", "tool", "item", "thinking", "plan", "command_output", "patch", "compaction"}
)
# The reply a follow-up drain failure gets (agent-runner.ts); the log line says the rest.
_DRAIN_FAILED_REPLY = "Previous run is still shutting down"
_STALE_EXPIRY = "expired as stale"
# 2026.7+ (PR #101910): visible waits re-check every 15 s instead of waiting forever.
BOUNDED_WAITS_SINCE = (2026, 7)
WAIT_SLICE_MS = 15_000
FINISHED_RUNS_KEPT = 10_000
RELEASES_KEPT = 10_000

_SKIP_RE = re.compile(
    r"skipped reply operation admission for (?P<key>\S+?); reason=(?P<reason>[\w-]+)"
)
_DRAIN_RE = re.compile(
    r"followup queue drain failed for (?P<key>\S+): (?P<error>[A-Za-z_]\w*): (?P<message>.*)$"
)
_SETTLE_RE = re.compile(
    r"reply run terminal settle: forced release sessionKey=(?P<key>\S+)(?P<rest>.*)$"
)
_STALE_RE = re.compile(
    r"reply run stale takeover: forced release sessionKey=(?P<key>\S+)"
    r"(?:.*?\breason=(?P<reason>\S+))?"
)
_DIAGNOSTIC_RE = re.compile(r"\b(?P<kind>stuck|stalled) session: (?P<rest>.*)$")
_FIELD_RE = re.compile(r"(?P<name>\w+)=(?P<value>\S+)")


def waiter_timeout_ms_for(version: str) -> int | None:
    """What a visible waiter's timeout is on this build, as far as the version tells."""
    numbers = re.findall(r"\d+", version)
    if len(numbers) < 2:
        return None
    return WAIT_SLICE_MS if (int(numbers[0]), int(numbers[1])) >= BOUNDED_WAITS_SINCE else None


@dataclass(frozen=True, slots=True)
class LogLine:
    """One ``logs.tail`` line: its text and the gateway's timestamp (None if absent)."""

    text: str
    at: float | None
    level: str = ""


@dataclass(frozen=True, slots=True)
class SessionDiagnostic:
    """A ``[diagnostic] stuck session`` / ``stalled session`` line.

    No normalized event carries these yet; the bridge logs them as warnings.
    """

    session_key: str
    kind: str  # stuck | stalled
    fields: dict[str, str]
    text: str
    at: float


def parse_log_line(raw: object) -> LogLine | None:
    """The text and time of a ``logs.tail`` line (tslog JSON or plain text)."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    try:
        obj = json.loads(raw)
    except ValueError:
        return LogLine(raw.strip(), None)
    if not isinstance(obj, dict):
        return LogLine(raw.strip(), None)
    text = obj.get("message")
    if not isinstance(text, str) or not text:
        text = _positional_text(obj)
    meta = obj.get("_meta")
    level = meta.get("logLevelName") if isinstance(meta, dict) else None
    stamp = obj.get("time") or (meta.get("date") if isinstance(meta, dict) else None)
    return LogLine(text, _iso_seconds(stamp), level if isinstance(level, str) else "")


def _positional_text(obj: dict[str, Any]) -> str:
    """tslog puts the logger name under "0" and the arguments under "1", "2", …"""
    parts = []
    for index in range(1, 10):
        value = obj.get(str(index))
        if isinstance(value, str):
            parts.append(value)
    return " ".join(parts)


def _iso_seconds(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _ms(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return value / 1000.0
    return None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


@dataclass(slots=True)
class _Waiter:
    run_id: str
    since: float
    blocking_run_id: str


@dataclass(slots=True)
class _Lock:
    """What the observer believes the registry entry for a key is."""

    run_id: str
    acquired_at: float
    phase: str = "queued"
    session_id: str = ""
    turn_kind: str = "visible"
    last_activity_at: float = 0.0
    result: str = ""
    code: str = ""
    # The run showed events of its own (it executes, it is not only an id in a list).
    started: bool = False
    # Synthesized from sessions.list (hasActiveRun + startedAt) without a run id.
    synthetic: bool = False


@dataclass(slots=True)
class _Session:
    key: str
    session_id: str = ""
    status: str = ""
    lock: _Lock | None = None
    waiters: dict[str, _Waiter] = field(default_factory=dict)
    # The run that held the lock last, for log lines that name only the key.
    last_run_id: str = ""
    last_result: str = ""
    last_ended_at: float = 0.0
    # The gateway time of the newest row applied (a sessions.list answer or sessions.changed).
    row_at: float = 0.0


@dataclass(slots=True)
class _Drop:
    """A run that ended without having run: a skipped message, reason not yet known."""

    session_key: str
    run_id: str
    blocking_run_id: str
    at: float
    received_at: float
    # Looked at once without a verdict: wait for a log line until unconfirmed_drop_s.
    checked: bool = False


class ObserverTranslator:
    """Frames and payloads of a stock gateway in, normalized registry events out.

    One per gateway process as seen by one bridge: ``load`` (re)starts it
    from a ``sessions.list`` answer and returns the ``Snapshot`` to deliver;
    ``event``, ``sessions``, ``log_lines`` and ``settle`` return the events
    that follow, numbered from the snapshot's ``seq``.
    """

    def __init__(
        self,
        *,
        gateway: str,
        boot_id: str,
        version: str = "",
        waiter_timeout_ms: int | None = None,
        activity_interval_s: float = 1.0,
        drop_settle_s: float = 1.0,
        unconfirmed_drop_s: float = 10.0,
        dedupe_window_s: float = 60.0,
    ) -> None:
        self.gateway = gateway
        self.boot_id = boot_id
        self.version = version
        self.waiter_timeout_ms = waiter_timeout_ms
        self.activity_interval_s = activity_interval_s
        self.drop_settle_s = drop_settle_s
        self.unconfirmed_drop_s = max(unconfirmed_drop_s, drop_settle_s)
        self.dedupe_window_s = dedupe_window_s
        self.seq = 0
        self.snapshots = 0
        # A terminal event or an unknown run: sessions.list should be read soon.
        self.wants_poll = False
        # sessions.changed carries whole rows with hasActiveRun (real 2026.9): polls can be rarer.
        self.rows_from_events = False
        self.diagnostics: list[SessionDiagnostic] = []
        self._sessions: dict[str, _Session] = {}
        self._finished: OrderedDict[str, str] = OrderedDict()  # run id -> result
        self._released: OrderedDict[str, str] = OrderedDict()  # run id -> how
        self._activity_at: dict[str, float] = {}
        self._drops: list[_Drop] = []
        self._waiter_ids: OrderedDict[str, str] = OrderedDict()  # announced, not yet resolved
        self._forced: OrderedDict[str, str] = OrderedDict()  # run id -> force-clear detail
        # Skips already reported per key, (reason, at, source), to report each once.
        self._reported_skips: dict[str, list[tuple[str, float, str]]] = {}
        self._out: list[RegistryEvent] = []
        self._received_at = 0.0

    # --- reading ---------------------------------------------------------------

    def owner_of(self, session_key: str) -> SnapshotEntry | None:
        """The entry the observer believes holds ``session_key``'s lock, if any."""
        s = self._sessions.get(session_key)
        if s is None or s.lock is None:
            return None
        return self._entry(s, s.lock)

    def note_force_clear(self, run_id: str, detail: str) -> None:
        """Runboard aborted ``run_id`` to force-clear it: its lock's release is that."""
        self._remember(self._forced, run_id, detail, RELEASES_KEPT)
        self.wants_poll = True

    @property
    def next_settle_at(self) -> float | None:
        """When ``settle`` has work (a dropped run whose reason is pending)."""
        return min((self._next_check(d) for d in self._drops), default=None)

    # --- whole state: the snapshot ----------------------------------------------

    def load(self, rows: Sequence[object], at: float, received_at: float) -> Snapshot:
        """Start over from a full ``sessions.list`` answer; the snapshot to deliver."""
        self._sessions.clear()
        self._drops.clear()
        self._begin(received_at)
        seq = self.seq
        for row in rows:
            self._row(row, at)
        self._out.clear()  # the snapshot carries all of it
        self.seq = seq
        self.wants_poll = False
        return self.snapshot(at, received_at)

    def snapshot(self, at: float, received_at: float) -> Snapshot:
        """The current picture as a ``Snapshot``, numbered after every event so far."""
        if self.snapshots or self.seq:
            self.seq += 1  # the store ignores a snapshot at or below its cursor
        self.snapshots += 1
        entries = tuple(self._entry(s, s.lock) for s in self._sessions.values() if s.lock)
        statuses = {
            s.key: s.status for s in self._sessions.values() if s.status in SESSION_STATUSES
        }
        return Snapshot(
            gateway=self.gateway,
            boot_id=self.boot_id,
            seq=self.seq,
            at=at,
            received_at=received_at,
            entries=entries,
            session_statuses=statuses,
            version=self.version,
        )

    def _entry(self, s: _Session, lock: _Lock) -> SnapshotEntry:
        waiters = tuple(
            SnapshotWaiter(
                waiter_id=w.run_id,
                since=w.since,
                timeout_ms=self.waiter_timeout_ms,
                message_id=w.run_id,
            )
            for w in s.waiters.values()
        )
        return SnapshotEntry(
            session_key=s.key,
            run_id=lock.run_id,
            session_id=lock.session_id or s.session_id,
            phase=lock.phase,
            result=lock.result,
            code=lock.code,
            started_at=lock.acquired_at,
            last_activity_at=lock.last_activity_at or lock.acquired_at,
            turn_kind=lock.turn_kind,
            waiters=waiters,
        )

    # --- inputs ----------------------------------------------------------------

    def sessions(
        self, rows: Sequence[object], at: float, received_at: float, *, complete: bool = True
    ) -> list[RegistryEvent]:
        """A ``sessions.list`` poll. ``complete``: every session is in ``rows``."""
        self._begin(received_at)
        seen = set()
        for row in rows:
            key = self._row(row, at)
            if key:
                seen.add(key)
        if complete:
            for s in list(self._sessions.values()):
                if s.key not in seen and (s.lock or s.waiters):
                    self._idle(s, at, "the session is gone from sessions.list")
        self.wants_poll = False
        return self._take()

    def event(self, name: str, payload: object, received_at: float) -> list[RegistryEvent]:
        """One gateway event (``agent``, ``chat``, ``sessions.changed``, ``shutdown``)."""
        if not isinstance(payload, dict):
            return []
        self._begin(received_at)
        if name == "agent":
            self._agent(payload, received_at)
        elif name == "chat":
            self._chat(payload, received_at)
        elif name == "sessions.changed":
            self._session_changed(payload, received_at)
        elif name == "shutdown":
            restart = payload.get("restartExpectedMs")
            self._emit(
                GatewayStopping,
                received_at,
                reason=_text(payload.get("reason")),
                restart_expected_ms=restart if isinstance(restart, int) else None,
            )
        return self._take()

    def log_lines(self, lines: Iterable[object], received_at: float) -> list[RegistryEvent]:
        """Lines from ``logs.tail``; the known signatures become events."""
        self._begin(received_at)
        for raw in lines:
            line = parse_log_line(raw)
            if line is not None:
                self._log_line(line, line.at or received_at)
        return self._take()

    def settle(self, now: float) -> list[RegistryEvent]:
        """Decide what each run that ended without running was, once the evidence is in.

        An abort of the run it waited behind (seen within ``drop_settle_s``)
        or a log line naming the skip makes it a ``DispatchSkipped``. Without
        either, after ``unconfirmed_drop_s``, it is taken as merged into the
        active run (OpenClaw steers a message into a busy run and ends the
        message's own run with an empty final): no skip.
        """
        self._begin(now)
        for drop in [d for d in self._drops if now >= self._next_check(d)]:
            reason = self._drop_reason(drop)
            if not reason and now - drop.received_at < self.unconfirmed_drop_s:
                drop.checked = True
                continue
            self._settle_drop(drop, reason)
        return self._take()

    def _next_check(self, drop: _Drop) -> float:
        wait = self.unconfirmed_drop_s if drop.checked else self.drop_settle_s
        return drop.received_at + wait

    def _settle_drop(self, drop: _Drop, reason: str) -> None:
        self._drops.remove(drop)
        s = self._session(drop.session_key)
        if not reason:
            self._resolve_waiter_event(s, drop.run_id, drop.at, "admitted")
            return
        outcome = "aborted" if reason == "aborted" else "timed_out"
        self._resolve_waiter_event(s, drop.run_id, drop.at, outcome)
        self._skip(drop.session_key, reason, drop.at, "run", drop.blocking_run_id, drop.run_id)

    # --- sessions.list rows and sessions.changed ---------------------------------

    def _row(self, row: object, at: float, *, activeness: bool = True) -> str:
        if not isinstance(row, dict):
            return ""
        key = row.get("key") or row.get("sessionKey")
        if not isinstance(key, str) or not key:
            return ""
        s = self._session(key)
        if at < s.row_at:
            return key  # an answer computed before the change event we already applied
        s.row_at = at
        s.session_id = _text(row.get("sessionId")) or s.session_id
        status = row.get("status")
        if isinstance(status, str) and status in SESSION_STATUSES and status != s.status:
            s.status = status
            self._emit(
                SessionStatusChanged,
                at,
                session_key=key,
                status=status,
                session_id=s.session_id,
            )
        if not activeness:
            return key
        active = row.get("activeRunIds")
        has_active = row.get("hasActiveRun")
        if isinstance(active, list):
            self._active_runs(s, [r for r in active if isinstance(r, str) and r], row, at)
        elif isinstance(has_active, bool):
            self._has_active(s, has_active, row, at)
        elif "hasActiveRun" not in row and isinstance(status, str):
            # Builds before hasActiveRun: the store's status is all there is.
            self._has_active(s, status == "running", row, at)
        return key

    def _session_changed(self, payload: dict[str, Any], received_at: float) -> None:
        at = _ms(payload.get("ts")) or received_at
        row = payload.get("session") if isinstance(payload.get("session"), dict) else payload
        assert isinstance(row, dict)
        if "key" not in row and "sessionKey" not in row:
            row = {**row, "key": payload.get("sessionKey") or payload.get("key")}
        activeness = any(k in row for k in ("activeRunIds", "hasActiveRun"))
        self.rows_from_events = self.rows_from_events or activeness
        if not activeness:
            # A status alone does not say whether a lock is held: sessions.list will.
            self.wants_poll = True
        self._row(row, at, activeness=activeness)

    def _active_runs(self, s: _Session, active: list[str], row: dict[str, Any], at: float) -> None:
        """``activeRunIds``: the exact set of chat runs executing or waiting."""
        active_set = set(active)
        lock = s.lock
        if lock is not None and not lock.synthetic and lock.run_id not in active_set:
            self._release(s, at, "normal", "the gateway shows the run no longer active")
            lock = None
        if lock is not None and lock.synthetic and active:
            # Now the run has a name: the synthetic lock was this session's first active run.
            started = [r for r in active if r not in s.waiters]
            self._release(s, at, "normal", f"identified as run {started[0] if started else ''}")
            lock = None
        for run_id in list(s.waiters):
            if run_id not in active_set:
                self._waiter_gone(s, run_id, at)
        fresh = [
            r
            for r in active
            if r not in self._finished and r not in s.waiters and r not in self._released
        ]
        if lock is None and fresh:
            # Which id owns the lock is not said; the simulated gateway lists it last.
            owner = fresh.pop()
            started_at = self._current_start(s, row, at)
            if started_at is not None:
                self._acquire(s, owner, started_at, "running", started=False)
            else:
                self._acquire(s, owner, at, "queued", started=False)
        for run_id in fresh:
            if s.lock is not None and run_id != s.lock.run_id:
                self._add_waiter(s, run_id, at)

    def _has_active(self, s: _Session, has_active: bool, row: dict[str, Any], at: float) -> None:
        """``hasActiveRun`` without the run ids: a lock can be seen, not named."""
        if not has_active:
            if s.lock is not None or s.waiters:
                self._idle(s, at, "the gateway shows no active run")
            return
        started_at = self._current_start(s, row, at)
        if s.lock is None and started_at is not None:
            run_id = f"observed:{s.session_id or s.key}:{int(started_at * 1000)}"
            if run_id not in self._finished:
                self._acquire(s, run_id, started_at, "running", started=False, synthetic=True)

    @staticmethod
    def _current_start(s: _Session, row: dict[str, Any], at: float) -> float | None:
        """The row's ``startedAt`` if it is the running run's, not a finished run's.

        OpenClaw updates ``startedAt`` when a run's model work starts; until
        then a running session still shows the previous run's start.
        """
        started_at, ended_at = _ms(row.get("startedAt")), _ms(row.get("endedAt"))
        if row.get("status") != "running" or started_at is None or started_at > at:
            return None
        if ended_at is not None and ended_at >= started_at:
            return None
        return started_at if started_at > s.last_ended_at else None

    def _idle(self, s: _Session, at: float, detail: str) -> None:
        if s.lock is not None:
            self._release(s, at, "normal", detail)
        for run_id in list(s.waiters):
            self._waiter_gone(s, run_id, at)

    # --- agent and chat events -----------------------------------------------------

    def _agent(self, p: dict[str, Any], received_at: float) -> None:
        run_id, key = _text(p.get("runId")), _text(p.get("sessionKey"))
        if not run_id or not key:
            return
        at = _ms(p.get("ts")) or received_at
        data = p.get("data") if isinstance(p.get("data"), dict) else {}
        assert isinstance(data, dict)
        stream = _text(p.get("stream"))
        phase = _text(data.get("phase"))
        kind = "heartbeat" if p.get("isHeartbeat") is True else "visible"
        session_id = _text(p.get("sessionId"))
        if stream == "lifecycle":
            if phase == "end":
                aborted = data.get("aborted") is True or data.get("status") == "cancelled"
                result = "aborted" if aborted else "completed"
                self._ended(key, run_id, at, result, "aborted_by_user" if aborted else "")
            elif phase == "error":
                error = _text(data.get("error"))
                if data.get("aborted") is True:
                    self._ended(key, run_id, at, "aborted", "aborted_by_user")
                else:
                    code = "run_stalled" if _STALE_EXPIRY in error else "run_failed"
                    self._ended(key, run_id, at, "failed", code, error)
            else:
                self._sign(key, run_id, at, "running", session_id, kind, activity=phase)
        elif stream == "run_status":
            self._sign(key, run_id, at, _run_status_phase(phase), session_id, kind)
        elif stream in _ACTIVITY_STREAMS:
            activity = "tool_call" if stream == "tool" else f"{stream}_delta"
            self._sign(key, run_id, at, None, session_id, kind, activity=activity)
        elif stream == "error":
            self._ended(key, run_id, at, "failed", "run_failed", _text(data.get("error")))

    def _chat(self, p: dict[str, Any], received_at: float) -> None:
        run_id, key = _text(p.get("runId")), _text(p.get("sessionKey"))
        if not run_id or not key:
            return
        at = _ms(p.get("ts")) or received_at
        state = _text(p.get("state"))
        if state == "status":
            self._sign(key, run_id, at, _run_status_phase(_text(p.get("phase"))), "", "visible")
        elif state == "delta":
            self._sign(key, run_id, at, None, "", "visible", activity="model_delta")
        elif state == "final":
            self._chat_final(key, run_id, at, p.get("message"))
        elif state == "aborted":
            self._ended(key, run_id, at, "aborted", "aborted_by_user")
        elif state == "error":
            self._ended(key, run_id, at, "failed", "run_failed", _text(p.get("errorMessage")))

    def _chat_final(self, key: str, run_id: str, at: float, message: object) -> None:
        s = self._session(key)
        if s.lock is not None and s.lock.run_id == run_id and s.lock.started:
            self._ended(key, run_id, at, "completed", "")
            return
        if run_id in self._finished:
            return
        if run_id in self._released:
            self._late_end(key, run_id, at, "completed", "")
            return
        # A final for a run that never ran: its message was dropped, or (with the
        # drain-failure reply) the follow-up drain failed, which the log line reports.
        reply = json.dumps(message) if message is not None else ""
        self._remember_finished(run_id, "skipped")
        if run_id in s.waiters:
            waiter = s.waiters.pop(run_id)
            blocking = waiter.blocking_run_id
        elif s.lock is not None and s.lock.run_id == run_id:
            self._release(s, at, "normal", "the run ended without having run")
            blocking = s.last_run_id if s.last_run_id != run_id else ""
        else:
            blocking = s.lock.run_id if s.lock else s.last_run_id
        if _DRAIN_FAILED_REPLY in reply:
            self._resolve_waiter_event(s, run_id, at, "admitted")
            return
        self._drops.append(_Drop(key, run_id, blocking, at, self._received_at))

    # --- the lock's lifecycle ------------------------------------------------------

    def _sign(
        self,
        key: str,
        run_id: str,
        at: float,
        phase: str | None,
        session_id: str,
        turn_kind: str,
        *,
        activity: str = "",
    ) -> None:
        """A run shows it executes: acquire, change phase or record activity."""
        if run_id in self._finished:
            return  # late events after the end (OpenClaw sends a few)
        s = self._session(key)
        s.session_id = session_id or s.session_id
        lock = s.lock
        if lock is not None and lock.run_id != run_id:
            if not lock.started and not lock.synthetic:
                # The run we took as owner never ran: it was waiting, this one holds the lock.
                waiting = lock.run_id
                self._release(s, at, "normal", f"run {run_id} holds the lock")
                self._remember_unfinished(waiting)
                self._acquire(s, run_id, at, phase or "running", session_id, turn_kind)
                self._add_waiter(s, waiting, at)
                return
            # One entry per key: if another run executes, the previous one was released.
            self._release(s, at, "normal", f"run {run_id} started")
            lock = None
        if lock is None:
            self._acquire(s, run_id, at, phase or "running", session_id, turn_kind)
            return
        lock.started = True
        lock.turn_kind = turn_kind if turn_kind == "heartbeat" else lock.turn_kind
        lock.session_id = session_id or lock.session_id
        if phase is not None and phase != lock.phase and not lock.result:
            lock.phase, lock.last_activity_at = phase, at
            self._emit(PhaseChanged, at, session_key=key, run_id=run_id, phase=phase)
        elif activity:
            last = self._activity_at.get(run_id)
            if last is None or at - last >= self.activity_interval_s:
                self._activity_at[run_id] = at
                lock.last_activity_at = at
                self._emit(RunActivity, at, session_key=key, run_id=run_id, activity=activity)

    def _acquire(
        self,
        s: _Session,
        run_id: str,
        at: float,
        phase: str,
        session_id: str = "",
        turn_kind: str = "visible",
        *,
        started: bool = True,
        synthetic: bool = False,
    ) -> None:
        if s.waiters.pop(run_id, None) is not None:
            self._resolve_waiter_event(s, run_id, at, "admitted")
        if started:
            for drop in [d for d in self._drops if d.session_key == s.key]:
                # A run the gateway starts on its own right after carries the dropped
                # message (a queued follow-up under a new run id): it was not lost.
                self._settle_drop(drop, "")
        s.lock = _Lock(
            run_id=run_id,
            acquired_at=at,
            phase=phase,
            session_id=session_id or s.session_id,
            turn_kind=turn_kind,
            last_activity_at=at,
            started=started,
            synthetic=synthetic,
        )
        self._activity_at[run_id] = at
        self._emit(
            LockAcquired,
            at,
            session_key=s.key,
            run_id=run_id,
            session_id=session_id or s.session_id,
            phase=phase,
            turn_kind=turn_kind,
            message_id="" if synthetic else run_id,
        )

    def _ended(
        self, key: str, run_id: str, at: float, result: str, code: str, error: str = ""
    ) -> None:
        if run_id in self._finished:
            return
        s = self._session(key)
        lock = s.lock
        if lock is not None and lock.synthetic and run_id not in s.waiters:
            # The run we knew only from sessions.list shows its id as it ends.
            self._release(s, at, "normal", f"identified as run {run_id}")
            self._acquire(s, run_id, at, "running", started=True)
            lock = s.lock
        if run_id in self._released and (lock is None or lock.run_id != run_id):
            self._late_end(key, run_id, at, result, code)
            return
        if lock is None or lock.run_id != run_id:
            if run_id in s.waiters or (lock is None and result == "aborted"):
                # An aborted message that never ran: dropped, like a final without reply.
                self._chat_final(key, run_id, at, None)
            return
        self._remember_finished(run_id, result)
        lock.result, lock.code, lock.phase = result, code, result
        self._emit(RunEnded, at, session_key=key, run_id=run_id, result=result, code=code)
        s.last_result, s.last_ended_at = result, at
        # Is the lock released? sessions.list says, unless sessions.changed rows will.
        self.wants_poll = not self.rows_from_events
        if code == "run_stalled":
            self._release(s, at, "stale_takeover", error or "no_activity")

    def _late_end(self, key: str, run_id: str, at: float, result: str, code: str) -> None:
        """A run whose lock we already saw go reports its end: record the result."""
        self._remember_finished(run_id, result)
        self._emit(RunEnded, at, session_key=key, run_id=run_id, result=result, code=code)

    def _release(self, s: _Session, at: float, how: str, detail: str) -> None:
        lock = s.lock
        if lock is None:
            return
        s.lock = None
        s.last_run_id, s.last_result = lock.run_id, lock.result
        self._activity_at.pop(lock.run_id, None)
        forced = self._forced.pop(lock.run_id, None)
        if forced is not None and how == "normal":
            how, detail = "force_clear", forced
        self._remember(self._released, lock.run_id, how, RELEASES_KEPT)
        self._emit(LockReleased, at, session_key=s.key, run_id=lock.run_id, how=how, detail=detail)

    # --- waiters and drops -----------------------------------------------------------

    def _add_waiter(self, s: _Session, run_id: str, at: float) -> None:
        assert s.lock is not None
        s.waiters[run_id] = _Waiter(run_id, at, s.lock.run_id)
        self._emit(
            WaiterAdded,
            at,
            session_key=s.key,
            waiter_id=run_id,
            timeout_ms=self.waiter_timeout_ms,
            blocking_run_id=s.lock.run_id,
            message_id=run_id,
        )

    def _waiter_gone(self, s: _Session, run_id: str, at: float) -> None:
        """A waiting run left ``activeRunIds`` without running: its message was dropped."""
        waiter = s.waiters.pop(run_id)
        self._remember_finished(run_id, "skipped")
        self._drops.append(_Drop(s.key, run_id, waiter.blocking_run_id, at, self._received_at))

    def _resolve_waiter_event(self, s: _Session, run_id: str, at: float, outcome: str) -> None:
        """Resolve a waiter the store was told about, once."""
        if self._waiter_ids.pop(run_id, None) is not None:
            self._emit(WaiterResolved, at, session_key=s.key, waiter_id=run_id, outcome=outcome)

    def _drop_reason(self, drop: _Drop) -> str:
        s = self._session(drop.session_key)
        blocking = drop.blocking_run_id
        lock = s.lock
        if lock is not None and lock.run_id == blocking and lock.result == "aborted":
            return "aborted"
        if s.last_run_id == blocking and s.last_result == "aborted":
            return "aborted"
        if self._finished.get(blocking) == "aborted":
            return "aborted"
        return ""

    def _skip(
        self,
        key: str,
        reason: str,
        at: float,
        source: str,
        blocking_run_id: str = "",
        message_id: str = "",
    ) -> None:
        """Report a skip once, whether it shows as a dropped run, a log line, or both."""
        reported = self._reported_skips.setdefault(key, [])
        reported[:] = [r for r in reported if at - r[1] < self.dedupe_window_s]
        for i, (other_reason, _, other_source) in enumerate(reported):
            if other_source != source and other_reason == reason:
                del reported[i]  # this one was already reported by the other source
                return
        if source == "log":
            # A dropped run still settling is this same skip: report it with the log's reason.
            for drop in self._drops:
                if drop.session_key == key:
                    self._settle_drop(drop, reason)
                    return
        reported.append((reason, at, source))
        self._emit(
            DispatchSkipped,
            at,
            session_key=key,
            reason=reason,
            blocking_run_id=blocking_run_id,
            message_id=message_id,
        )

    # --- log lines -------------------------------------------------------------------

    def _log_line(self, line: LogLine, at: float) -> None:
        text = line.text
        if m := _SKIP_RE.search(text):
            s = self._session(m["key"])
            blocking = s.lock.run_id if s.lock else s.last_run_id
            self._skip(m["key"], m["reason"], at, "log", blocking)
        elif m := _DRAIN_RE.search(text):
            s = self._session(m["key"])
            self._emit(
                FollowupDrainFailed,
                at,
                session_key=m["key"],
                error=m["error"],
                message=m["message"],
                blocking_run_id=s.lock.run_id if s.lock else s.last_run_id,
            )
        elif m := _SETTLE_RE.search(text):
            self._forced_release(m["key"], at, "forced_settle", m["rest"].strip())
        elif m := _STALE_RE.search(text):
            self._forced_release(m["key"], at, "stale_takeover", m["reason"] or "")
        elif m := _DIAGNOSTIC_RE.search(text):
            fields = {f["name"]: f["value"] for f in _FIELD_RE.finditer(m["rest"])}
            key = fields.get("sessionKey", "")
            if key:
                self.diagnostics.append(SessionDiagnostic(key, m["kind"], fields, text, at))

    def _forced_release(self, key: str, at: float, how: str, detail: str) -> None:
        """The registry released a lock itself; name how, even if we saw it go already."""
        s = self._session(key)
        if s.lock is not None and s.lock.result:
            self._release(s, at, how, detail)
            return
        run_id = s.last_run_id
        if not run_id or self._released.get(run_id) == how:
            return
        # Released earlier as "normal" from sessions.list: the log line says how.
        self._remember(self._released, run_id, how, RELEASES_KEPT)
        self._emit(LockReleased, at, session_key=key, run_id=run_id, how=how, detail=detail)

    # --- bookkeeping -------------------------------------------------------------------

    def _session(self, key: str) -> _Session:
        s = self._sessions.get(key)
        if s is None:
            s = self._sessions[key] = _Session(key)
        return s

    def _begin(self, received_at: float) -> None:
        self._received_at = received_at

    def _emit(self, cls: type[RegistryEvent], at: float, **fields: Any) -> None:
        self.seq += 1
        self._out.append(
            cls(
                gateway=self.gateway,
                boot_id=self.boot_id,
                seq=self.seq,
                at=at,
                received_at=self._received_at,
                **fields,
            )
        )
        if cls is WaiterAdded:
            self._remember(self._waiter_ids, fields["waiter_id"], "", FINISHED_RUNS_KEPT)

    def _take(self) -> list[RegistryEvent]:
        out, self._out = self._out, []
        return out

    def _remember_finished(self, run_id: str, result: str) -> None:
        self._remember(self._finished, run_id, result, FINISHED_RUNS_KEPT)

    def _remember_unfinished(self, run_id: str) -> None:
        """We took a waiting run for the owner: forget that it ended or was released."""
        self._finished.pop(run_id, None)
        self._released.pop(run_id, None)

    @staticmethod
    def _remember(store: OrderedDict[str, str], key: str, value: str, cap: int) -> None:
        store[key] = value
        store.move_to_end(key)
        while len(store) > cap:
            store.popitem(last=False)


def _run_status_phase(status: str) -> str | None:
    """The registry phase a ``run_status`` phase implies, or None (activity only)."""
    if status in _QUEUED_RUN_STATUSES:
        return "queued"
    if status in _RUNNING_RUN_STATUSES:
        return "running"
    if status in _NAMED_PHASES:
        return status
    return None
