"""Flag rules: pure functions of one session's facts and a clock.

Each rule answers one question about a session and, when the answer is "this
is wrong", returns a ``Finding`` with a stable code, a severity and a
one-sentence why an operator can act on. ``since`` is the moment the rule's
condition became true (cause time plus threshold), so a flag raised late by a
slow tick still says when the problem began.

No Django, no database, no wall clock: ingest builds ``SessionFacts`` from the
store and passes ``now``; tests do the same with plain values.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from gateway_bridge.events import TERMINAL_PHASES

WARNING = "warning"
CRITICAL = "critical"
SEVERITY_RANK = {"": 0, WARNING: 1, CRITICAL: 2}


@dataclass(frozen=True, slots=True)
class WaiterFact:
    waiter_id: str
    since: float
    timeout_ms: int | None


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What the rules read about one session.

    The fields before ``waiters`` are named for ``Session``'s columns and copied
    from the row by name (``adminpanel.ingest.flags``): a rule that needs another
    column adds a field here, nothing else.
    """

    session_key: str
    locked: bool
    run_id: str = ""
    phase: str = ""
    result: str = ""
    lock_acquired_at: float | None = None
    last_progress_at: float | None = None
    ended_at: float | None = None
    store_status: str = ""
    store_status_at: float | None = None
    waiters: tuple[WaiterFact, ...] = ()
    skips: tuple[float, ...] = ()
    outcomes: tuple[tuple[float, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Thresholds:
    stuck_after_s: float = 120.0
    stuck_after_by_phase: dict[str, float] = field(default_factory=dict)
    terminal_held_after_s: float = 5.0
    waiter_unbounded_after_s: float = 30.0
    skip_burst_count: int = 3
    skip_burst_window_s: float = 60.0
    alternating_min_failures: int = 2
    alternating_window_s: float = 300.0
    store_mismatch_after_s: float = 10.0

    @classmethod
    def from_settings(cls) -> Thresholds:
        from django.conf import settings

        return cls(
            stuck_after_s=settings.RUNBOARD_STUCK_AFTER_S,
            stuck_after_by_phase=dict(settings.RUNBOARD_STUCK_AFTER_BY_PHASE),
            terminal_held_after_s=settings.RUNBOARD_TERMINAL_HELD_AFTER_S,
            waiter_unbounded_after_s=settings.RUNBOARD_WAITER_UNBOUNDED_AFTER_S,
            skip_burst_count=settings.RUNBOARD_SKIP_BURST_COUNT,
            skip_burst_window_s=settings.RUNBOARD_SKIP_BURST_WINDOW_S,
            alternating_min_failures=settings.RUNBOARD_ALTERNATING_MIN_FAILURES,
            alternating_window_s=settings.RUNBOARD_ALTERNATING_WINDOW_S,
            store_mismatch_after_s=settings.RUNBOARD_STORE_MISMATCH_AFTER_S,
        )

    def stuck_after(self, phase: str) -> float:
        return self.stuck_after_by_phase.get(phase, self.stuck_after_s)


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: str
    why: str
    since: float
    details: dict[str, Any] = field(default_factory=dict)


def _clock(ts: float) -> str:
    """An absolute time: a flag's why is written once, so it must not say "N s ago"."""
    return time.strftime("%H:%M:%S UTC", time.gmtime(ts))


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


def terminal_but_held(f: SessionFacts, now: float, th: Thresholds) -> Finding | None:
    """The leak signature: the run has its result, yet the lock is still there."""
    if not (f.locked and f.result and f.ended_at is not None):
        return None
    since = f.ended_at + th.terminal_held_after_s
    if now < since:
        return None
    return Finding(
        code="terminal_but_held",
        severity=CRITICAL,
        why=(
            f"Run {f.run_id} ended {f.result} at {_clock(f.ended_at)} but still holds "
            "the session's lock: new messages for this session will wait or be dropped "
            "until the lock is cleared."
        ),
        since=since,
        details={"run_id": f.run_id, "result": f.result},
    )


def no_progress(f: SessionFacts, now: float, th: Thresholds) -> Finding | None:
    """A live (non-terminal) run that has not moved for longer than its phase allows."""
    if not f.locked or f.result or f.phase in TERMINAL_PHASES:
        return None
    last = f.last_progress_at if f.last_progress_at is not None else f.lock_acquired_at
    if last is None:
        return None
    limit = th.stuck_after(f.phase)
    since = last + limit
    if now < since:
        return None
    return Finding(
        code="no_progress",
        severity=CRITICAL if f.waiters else WARNING,
        why=(
            f"Run {f.run_id} has made no progress in phase {f.phase or 'unknown'} since "
            f"{_clock(last)} (threshold {_seconds(limit)})"
            + (f"; {len(f.waiters)} message(s) are waiting behind it." if f.waiters else ".")
        ),
        since=since,
        details={"run_id": f.run_id, "phase": f.phase, "threshold_s": limit},
    )


def unbounded_waiter(f: SessionFacts, now: float, th: Thresholds) -> Finding | None:
    """A message waiting for the lock with no timeout: it waits forever if the lock leaked."""
    unbounded = [w for w in f.waiters if w.timeout_ms is None]
    if not unbounded:
        return None
    oldest = min(w.since for w in unbounded)
    since = oldest + th.waiter_unbounded_after_s
    if now < since:
        return None
    return Finding(
        code="unbounded_waiter",
        severity=WARNING,
        why=(
            f"{len(unbounded)} message(s) have waited since {_clock(oldest)} for this "
            "session's lock with no timeout; this gateway build never gives up on them."
        ),
        since=since,
        details={"waiters": len(unbounded), "oldest_since": oldest},
    )


def skip_burst(f: SessionFacts, now: float, th: Thresholds) -> Finding | None:
    """Admission gave up on several messages in a short time: users are being ignored."""
    recent = sorted(t for t in f.skips if now - t <= th.skip_burst_window_s)
    if len(recent) < th.skip_burst_count:
        return None
    return Finding(
        code="skip_burst",
        severity=WARNING,
        why=(
            f"{len(recent)} messages were skipped (not answered) in the last "
            f"{_seconds(th.skip_burst_window_s)} because the session was busy or aborted."
        ),
        since=recent[th.skip_burst_count - 1],
        details={"skips": len(recent)},
    )


def alternating_error(f: SessionFacts, now: float, th: Thresholds) -> Finding | None:
    """Seed 2's pattern: every other message fails with ReplyRunAlreadyActiveError."""
    recent = [(t, o) for t, o in f.outcomes if now - t <= th.alternating_window_s]
    failures = [t for t, o in recent if o == "drain_failed"]
    if len(failures) < th.alternating_min_failures:
        return None
    if not _alternates([o for _, o in recent]):
        return None
    return Finding(
        code="alternating_error",
        severity=WARNING,
        why=(
            f"{len(failures)} of the last {len(recent)} messages failed with "
            "ReplyRunAlreadyActiveError, alternating with successes: the follow-up drain races "
            "the lock's release, so every other message is lost."
        ),
        since=failures[th.alternating_min_failures - 1],
        details={"failures": len(failures), "admissions": len(recent)},
    )


def _alternates(outcomes: list[str]) -> bool:
    """Failures separated by successes, never two failures in a row."""
    return all(not (a == b == "drain_failed") for a, b in pairwise(outcomes))


def store_disagrees(f: SessionFacts, now: float, th: Thresholds) -> Finding | None:
    """The session store says the session is idle while the registry still holds its lock."""
    if not f.locked or f.store_status in ("", "running"):
        return None
    marks = [t for t in (f.store_status_at, f.lock_acquired_at) if t is not None]
    if not marks:
        return None
    started = max(marks)
    since = started + th.store_mismatch_after_s
    if now < since:
        return None
    return Finding(
        code="store_disagrees",
        severity=WARNING,
        why=(
            f"The gateway's session store says '{f.store_status}' but its registry still "
            f"holds a lock for run {f.run_id}: the gateway looks idle while it is blocked."
        ),
        since=since,
        details={"store_status": f.store_status, "run_id": f.run_id},
    )


RULES: tuple[Callable[[SessionFacts, float, Thresholds], Finding | None], ...] = (
    terminal_but_held,
    no_progress,
    unbounded_waiter,
    skip_burst,
    alternating_error,
    store_disagrees,
)
RULE_CODES: tuple[str, ...] = (
    "terminal_but_held",
    "no_progress",
    "unbounded_waiter",
    "skip_burst",
    "alternating_error",
    "store_disagrees",
)


def evaluate(facts: SessionFacts, now: float, thresholds: Thresholds) -> list[Finding]:
    findings = (rule(facts, now, thresholds) for rule in RULES)
    return [f for f in findings if f is not None]


def windows(thresholds: Thresholds) -> tuple[float, float]:
    """How far back skips and admission outcomes can still matter to a rule."""
    return thresholds.skip_burst_window_s, thresholds.alternating_window_s


def worst_severity(findings: list[Finding]) -> str:
    return max((f.severity for f in findings), key=SEVERITY_RANK.__getitem__, default="")
