"""How a session's history reads: registry events, flags and action attempts as sentences.

The session page shows one timeline; ``build_timeline`` merges the three
tables' rows into ``TimelineEntry`` lines, newest first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.urls import reverse

from adminpanel.audit.queries import PENDING_DETAIL, action_label, actor_label, outcome_of
from adminpanel.models import AuditEntry, Flag, TimelineEvent


@dataclass(frozen=True)
class TimelineEntry:
    """One line of a session's history, whatever table it came from."""

    at: datetime
    category: str  # lock, phase, waiter, skip, error, flag, store, recovery, audit, other
    title: str
    detail: str = ""
    run_id: str = ""
    url: str = ""  # where the line's own record is (an audit entry)


# Lock releases by force: the warnings page counts them.
FORCED_HOWS = ("forced_settle", "stale_takeover", "force_clear")

# Lock releases that are recoveries: the gateway's own (automatic) or an operator's.
RECOVERY_HOWS = {
    "forced_settle": "automatic: forced release after a terminal result",
    "stale_takeover": "automatic: stale takeover",
    "force_clear": "operator: force-clear",
    "restart": "gateway restart",
    "reconciled": "Runboard: the gateway's snapshot no longer had the lock",
}


def describe_event(event: TimelineEvent) -> TimelineEntry:
    """A registry event as a sentence an operator reads at a glance."""
    d: dict[str, Any] = event.data or {}
    kind, at, run = event.kind, event.at, event.run_id
    preview = d.get("message_preview") or ""
    if kind == "lock_acquired":
        detail = f"phase {d.get('phase', '?')}, {d.get('turn_kind', 'visible')} turn"
        return TimelineEntry(at, "lock", "Lock acquired", _join(detail, preview), run)
    if kind == "phase_changed":
        return TimelineEntry(at, "phase", f"Phase → {d.get('phase', '?')}", "", run)
    if kind == "run_activity":
        return TimelineEntry(at, "phase", "Progress", str(d.get("activity", "")), run)
    if kind == "run_ended":
        code = d.get("code") or ""
        return TimelineEntry(at, "phase", f"Run ended: {d.get('result', '?')}", code, run)
    if kind == "lock_released" or kind.startswith("lock_"):
        how = d.get("how") or kind.removeprefix("lock_")
        inferred = "" if kind == "lock_released" else "inferred by Runboard"
        category = "recovery" if how in RECOVERY_HOWS and how != "normal" else "lock"
        detail = _join(RECOVERY_HOWS.get(how, ""), str(d.get("detail") or ""), inferred)
        return TimelineEntry(at, category, f"Lock released ({how})", detail, run)
    if kind == "run_lost_at_restart":
        return TimelineEntry(at, "recovery", "Run lost at gateway restart", "", run)
    if kind == "waiter_added":
        timeout = d.get("timeout_ms")
        wait = "no timeout: waits forever" if timeout is None else f"timeout {timeout} ms"
        behind = d.get("blocking_run_id") or ""
        detail = _join(wait, f"behind run {behind}" if behind else "", preview)
        return TimelineEntry(at, "waiter", "Message waiting for the lock", detail, run)
    if kind == "waiter_resolved":
        title = f"Waiting message {d.get('outcome', 'resolved')}"
        return TimelineEntry(at, "waiter", title, str(d.get("waiter_id", "")), run)
    if kind == "dispatch_skipped":
        title = f"Dispatch skipped ({d.get('reason', '?')})"
        behind = d.get("blocking_run_id") or ""
        detail = _join(f"blocked by run {behind}" if behind else "", preview)
        return TimelineEntry(at, "skip", title, detail, run)
    if kind == "followup_drain_failed":
        title = f"Follow-up drain failed: {d.get('error', 'error')}"
        return TimelineEntry(at, "error", title, _join(str(d.get("message", "")), preview), run)
    if kind == "session_status_changed":
        return TimelineEntry(at, "store", f"Session store: {d.get('status', '?')}", "", run)
    return TimelineEntry(at, "other", kind.replace("_", " ").capitalize(), _summary(d), run)


def describe_flag(flag: Flag) -> list[TimelineEntry]:
    """A flag adds up to two lines: raised (with its why) and cleared."""
    entries = [
        TimelineEntry(
            flag.raised_at, "flag", f"Flag raised: {flag.code} ({flag.severity})", flag.why
        )
    ]
    if flag.cleared_at is not None:
        entries.append(TimelineEntry(flag.cleared_at, "flag", f"Flag cleared: {flag.code}"))
    return entries


def describe_attempt(intent: AuditEntry) -> TimelineEntry:
    """An action attempt: "force-clear by operator: <reason> → success", linked to its entry."""
    done = outcome_of(intent)
    result = done.result if done else PENDING_DETAIL
    dry = " (dry run)" if intent.dry_run else ""
    action, actor = action_label(intent.action), actor_label(intent)
    title = f"{action.capitalize()}{dry} by {actor}: {intent.reason} → {result}"
    url = reverse("audit_entry", args=[intent.pk])
    detail = done.detail if done else ""
    return TimelineEntry(intent.at, "audit", title, detail, intent.expect_run_id, url)


def build_timeline(
    events: list[TimelineEvent], flags: list[Flag], attempts: list[AuditEntry] | None = None
) -> list[TimelineEntry]:
    """Everything that happened to a session, newest first."""
    entries = [describe_event(e) for e in events]
    for flag in flags:
        entries.extend(describe_flag(flag))
    entries.extend(describe_attempt(a) for a in attempts or ())
    entries.sort(key=lambda e: e.at, reverse=True)
    return entries


def _join(*parts: str) -> str:
    return " · ".join(p for p in parts if p)


def _summary(data: Any) -> str:
    if not data:
        return ""
    text = json.dumps(data, separators=(",", ":"), sort_keys=True, default=str)
    return text if len(text) <= 160 else text[:157] + "..."
