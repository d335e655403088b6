"""Observer mode's reading of a stock gateway's frames: rows, events and log lines.

``ObserverTranslator`` turns ``sessions.list`` rows, ``sessions.changed``,
``agent`` and ``chat`` events and ``logs.tail`` lines into the normalized
events (``gateway_bridge.events``) plugin mode produces, as far as they
allow. It is pure: frames and payloads in, events out, times passed in. The
socket loop that feeds it is ``gateway_bridge.observer.mode``; the inferred
registry it updates is ``inferred``; the package docstring has the rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from gateway_bridge.events import (
    PHASES,
    SESSION_STATUSES,
    TERMINAL_PHASES,
    FollowupDrainFailed,
    GatewayStopping,
    RegistryEvent,
    SessionStatusChanged,
    Snapshot,
)
from gateway_bridge.gateway_log import (
    DrainFailedLine,
    ForcedReleaseLine,
    SessionDiagnostic,
    SkipLine,
    parse_log_line,
    signature,
)
from gateway_bridge.observer.inferred import InferredRegistry, SessionState, ms, text_of

# run_status phases OpenClaw reports before the model starts: the registry entry is queued.
_QUEUED_RUN_STATUSES = frozenset({"preparing_workspace", "preparing_context"})
_RUNNING_RUN_STATUSES = frozenset({"starting_model", "running", "model"})
# Registry phases a build may report by name (2026.7+ waiting phases, compaction).
_NAMED_PHASES = frozenset(PHASES) - TERMINAL_PHASES
_ACTIVITY_STREAMS = frozenset(
    {"assistant", "tool", "item", "thinking", "plan", "command_output", "patch", "compaction"}
)
STALE_EXPIRY = "expired as stale"
# 2026.7+ (PR #101910): visible waits re-check every 15 s instead of waiting forever.
BOUNDED_WAITS_SINCE = (2026, 7)
WAIT_SLICE_MS = 15_000


def waiter_timeout_ms_for(version: str) -> int | None:
    """What a visible waiter's timeout is on this build, as far as the version tells."""
    numbers = re.findall(r"\d+", version)
    if len(numbers) < 2:
        return None
    return WAIT_SLICE_MS if (int(numbers[0]), int(numbers[1])) >= BOUNDED_WAITS_SINCE else None


class ObserverTranslator(InferredRegistry):
    """Frames and payloads of a stock gateway in, normalized registry events out.

    One per gateway process as seen by one bridge: ``load`` (re)starts it
    from a ``sessions.list`` answer and returns the ``Snapshot`` to deliver;
    ``event``, ``sessions``, ``log_lines`` and ``settle`` return the events
    that follow, numbered from the snapshot's ``seq``.
    """

    # --- whole state: the snapshot ----------------------------------------------

    def load(self, rows: Sequence[object], at: float, received_at: float) -> Snapshot:
        """Start over from a full ``sessions.list`` answer; the snapshot to deliver."""
        self.by_key.clear()
        self.drops.clear()
        self.begin(received_at)
        seq = self.seq
        for row in rows:
            self._row(row, at)
        self.out.clear()  # the snapshot carries all of it
        self.seq = seq
        self.wants_poll = False
        return self.snapshot(at, received_at)

    # --- inputs ----------------------------------------------------------------

    def sessions(
        self, rows: Sequence[object], at: float, received_at: float, *, complete: bool = True
    ) -> list[RegistryEvent]:
        """A ``sessions.list`` poll. ``complete``: every session is in ``rows``."""
        self.begin(received_at)
        seen = set()
        for row in rows:
            key = self._row(row, at)
            if key:
                seen.add(key)
        if complete:
            for s in list(self.by_key.values()):
                if s.key not in seen and (s.lock or s.waiters):
                    self._idle(s, at, "the session is gone from sessions.list")
        self.wants_poll = False
        return self.take()

    def event(self, name: str, payload: object, received_at: float) -> list[RegistryEvent]:
        """One gateway event (``agent``, ``chat``, ``sessions.changed``, ``shutdown``)."""
        if not isinstance(payload, dict):
            return []
        self.begin(received_at)
        if name == "agent":
            self._agent(payload, received_at)
        elif name == "chat":
            self._chat(payload, received_at)
        elif name == "sessions.changed":
            self._session_changed(payload, received_at)
        elif name == "shutdown":
            restart = payload.get("restartExpectedMs")
            self.emit(
                GatewayStopping,
                received_at,
                reason=text_of(payload.get("reason")),
                restart_expected_ms=restart if isinstance(restart, int) else None,
            )
        return self.take()

    def log_lines(self, lines: Iterable[object], received_at: float) -> list[RegistryEvent]:
        """Lines from ``logs.tail``; the known signatures become events."""
        self.begin(received_at)
        for raw in lines:
            line = parse_log_line(raw)
            if line is not None:
                self._log_line(line.text, line.at or received_at)
        return self.take()

    # --- sessions.list rows and sessions.changed ---------------------------------

    def _row(self, row: object, at: float, *, activeness: bool = True) -> str:
        if not isinstance(row, dict):
            return ""
        key = row.get("key") or row.get("sessionKey")
        if not isinstance(key, str) or not key:
            return ""
        s = self.session(key)
        if at < s.row_at:
            return key  # an answer computed before the change event we already applied
        s.row_at = at
        s.session_id = text_of(row.get("sessionId")) or s.session_id
        status = row.get("status")
        if isinstance(status, str) and status in SESSION_STATUSES and status != s.status:
            s.status = status
            self.emit(
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
        at = ms(payload.get("ts")) or received_at
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

    def _active_runs(
        self, s: SessionState, active: list[str], row: dict[str, Any], at: float
    ) -> None:
        """``activeRunIds``: the exact set of chat runs executing or waiting."""
        active_set = set(active)
        lock = s.lock
        if lock is not None and not lock.synthetic and lock.run_id not in active_set:
            self.release(s, at, "normal", "the gateway shows the run no longer active")
            lock = None
        if lock is not None and lock.synthetic and active:
            # Now the run has a name: the synthetic lock was this session's first active run.
            started = [r for r in active if r not in s.waiters]
            self.release(s, at, "normal", f"identified as run {started[0] if started else ''}")
            lock = None
        for run_id in list(s.waiters):
            if run_id not in active_set:
                self.waiter_gone(s, run_id, at)
        fresh = [
            r
            for r in active
            if r not in self.finished and r not in s.waiters and r not in self.released
        ]
        if lock is None and fresh:
            # Which id owns the lock is not said; the simulated gateway lists it last.
            owner = fresh.pop()
            started_at = self._current_start(s, row, at)
            if started_at is not None:
                self.acquire(s, owner, started_at, "running", started=False)
            else:
                self.acquire(s, owner, at, "queued", started=False)
        for run_id in fresh:
            if s.lock is not None and run_id != s.lock.run_id:
                self.add_waiter(s, run_id, at)

    def _has_active(
        self, s: SessionState, has_active: bool, row: dict[str, Any], at: float
    ) -> None:
        """``hasActiveRun`` without the run ids: a lock can be seen, not named."""
        if not has_active:
            if s.lock is not None or s.waiters:
                self._idle(s, at, "the gateway shows no active run")
            return
        started_at = self._current_start(s, row, at)
        if s.lock is None and started_at is not None:
            run_id = f"observed:{s.session_id or s.key}:{int(started_at * 1000)}"
            if run_id not in self.finished:
                self.acquire(s, run_id, started_at, "running", started=False, synthetic=True)

    @staticmethod
    def _current_start(s: SessionState, row: dict[str, Any], at: float) -> float | None:
        """The row's ``startedAt`` if it is the running run's, not a finished run's.

        OpenClaw updates ``startedAt`` when a run's model work starts; until
        then a running session still shows the previous run's start.
        """
        started_at, ended_at = ms(row.get("startedAt")), ms(row.get("endedAt"))
        if row.get("status") != "running" or started_at is None or started_at > at:
            return None
        if ended_at is not None and ended_at >= started_at:
            return None
        return started_at if started_at > s.last_ended_at else None

    def _idle(self, s: SessionState, at: float, detail: str) -> None:
        if s.lock is not None:
            self.release(s, at, "normal", detail)
        for run_id in list(s.waiters):
            self.waiter_gone(s, run_id, at)

    # --- agent and chat events -----------------------------------------------------

    def _agent(self, p: dict[str, Any], received_at: float) -> None:
        run_id, key = text_of(p.get("runId")), text_of(p.get("sessionKey"))
        if not run_id or not key:
            return
        at = ms(p.get("ts")) or received_at
        data = p.get("data") if isinstance(p.get("data"), dict) else {}
        assert isinstance(data, dict)
        stream = text_of(p.get("stream"))
        phase = text_of(data.get("phase"))
        kind = "heartbeat" if p.get("isHeartbeat") is True else "visible"
        session_id = text_of(p.get("sessionId"))
        if stream == "lifecycle":
            if phase == "end":
                aborted = data.get("aborted") is True or data.get("status") == "cancelled"
                result = "aborted" if aborted else "completed"
                self.ended(key, run_id, at, result, "aborted_by_user" if aborted else "")
            elif phase == "error":
                error = text_of(data.get("error"))
                if data.get("aborted") is True:
                    self.ended(key, run_id, at, "aborted", "aborted_by_user")
                else:
                    code = "run_stalled" if STALE_EXPIRY in error else "run_failed"
                    self.ended(key, run_id, at, "failed", code, error)
            else:
                self.sign(key, run_id, at, "running", session_id, kind, activity=phase)
        elif stream == "run_status":
            self.sign(key, run_id, at, run_status_phase(phase), session_id, kind)
        elif stream in _ACTIVITY_STREAMS:
            activity = "tool_call" if stream == "tool" else f"{stream}_delta"
            self.sign(key, run_id, at, None, session_id, kind, activity=activity)
        elif stream == "error":
            self.ended(key, run_id, at, "failed", "run_failed", text_of(data.get("error")))

    def _chat(self, p: dict[str, Any], received_at: float) -> None:
        run_id, key = text_of(p.get("runId")), text_of(p.get("sessionKey"))
        if not run_id or not key:
            return
        at = ms(p.get("ts")) or received_at
        state = text_of(p.get("state"))
        if state == "status":
            self.sign(key, run_id, at, run_status_phase(text_of(p.get("phase"))), "", "visible")
        elif state == "delta":
            self.sign(key, run_id, at, None, "", "visible", activity="model_delta")
        elif state == "final":
            self.chat_final(key, run_id, at, p.get("message"))
        elif state == "aborted":
            self.ended(key, run_id, at, "aborted", "aborted_by_user")
        elif state == "error":
            self.ended(key, run_id, at, "failed", "run_failed", text_of(p.get("errorMessage")))

    # --- log lines -------------------------------------------------------------------

    def _log_line(self, text: str, at: float) -> None:
        found = signature(text, at)
        if isinstance(found, SkipLine):
            s = self.session(found.session_key)
            blocking = s.lock.run_id if s.lock else s.last_run_id
            self.skip(found.session_key, found.reason, at, "log", blocking)
        elif isinstance(found, DrainFailedLine):
            s = self.session(found.session_key)
            self.emit(
                FollowupDrainFailed,
                at,
                session_key=found.session_key,
                error=found.error,
                message=found.message,
                blocking_run_id=s.lock.run_id if s.lock else s.last_run_id,
            )
        elif isinstance(found, ForcedReleaseLine):
            self.forced_release(found.session_key, at, found.how, found.detail)
        elif isinstance(found, SessionDiagnostic):
            self.diagnostics.append(found)


def run_status_phase(status: str) -> str | None:
    """The registry phase a ``run_status`` phase implies, or None (activity only)."""
    if status in _QUEUED_RUN_STATUSES:
        return "queued"
    if status in _RUNNING_RUN_STATUSES:
        return "running"
    if status in _NAMED_PHASES:
        return status
    return None
