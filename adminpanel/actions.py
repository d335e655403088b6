"""Operator actions: force-clear, requeue, abort, clear-and-requeue — race-safe and audited.

One attempt on one session goes: validate, read the session as the store has
it, refuse at once if its owner is no longer the run the operator saw
(``conflict``, nothing sent), write the audit intent, ask the session's bridge
once to carry the action out within one deadline (the bridge's call timeout;
which gateway calls that takes is ``gateway_bridge``'s to decide, and it
reports the calls it made), and write the audit outcome: ``success``, ``noop``
(nothing needed doing), ``conflict`` (the gateway's compare-and-clear found
another owner) or ``error`` (gateway down, slow, or refused). Nothing is
retried. The same ``once`` key (a form's submission id, an API client's
Idempotency-Key) returns the first attempt's outcome instead of acting twice.

An attempt cut off between its intent and its outcome (a worker killed, the
database gone while the outcome is written) gets the outcome ``interrupted``:
at the next start of a web worker or bridge (``mark_interrupted``), or when a
retry asks for it once its deadline has passed. Whether the gateway acted is
then unknown; the detail says so.

Used by the pages, the JSON API and the recovery policies alike; the pages and
the API reach the bridge over the channel layer, recovery (in the bridge's
process) directly.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection
from django.utils import timezone

from adminpanel.action_outcomes import (
    OUTCOME_RETRY_S,
    SETTLE_WAIT_S,
    UNRECORDED,
    append_outcome,
    first_line,
    interrupted_before,
    mark_one_interrupted,
)
from adminpanel.audit import chain as audit
from adminpanel.bridges.command_client import BridgeCaller, call_bridge
from adminpanel.held_messages import HeldMessage, held_messages, still_waiting
from adminpanel.models import AuditEntry, Session
from adminpanel.observability import counters
from gateway_bridge import commands
from gateway_bridge.errors import GatewayError
from gateway_bridge.scopes import missing_for_actions

log = structlog.get_logger(__name__)

ACTIONS = ("force_clear", "requeue", "abort", "clear_and_requeue")
LABELS = {
    "force_clear": "Force-clear",
    "requeue": "Requeue",
    "abort": "Abort",
    "clear_and_requeue": "Clear and requeue",
}
NEEDS_RUN = ("force_clear", "abort", "clear_and_requeue")
REASON_MAX = 1000
# Progress this recent means the run may still answer: the dialog warns.
RECENT_PROGRESS_S = 5.0
NOTHING_TO_REQUEUE = "No lost message with a known text to requeue."
TIMEOUT_CODES = ("TIMEOUT", "BRIDGE_NOT_ANSWERING")
# A pending intent a double submit waits for, at most (then it reports it as in progress).
WAIT_FOR_FIRST_S = 1.0


class ActionRefused(ValueError):
    """The request itself is wrong (no reason, unknown session, bad action): nothing recorded."""


@dataclass(frozen=True, slots=True)
class Actor:
    name: str
    kind: str = "user"  # user | policy


@dataclass(frozen=True, slots=True)
class Target:
    gateway: str
    session_key: str
    expect_run_id: str = ""


@dataclass(slots=True)
class Outcome:
    audit_id: int
    result: str  # success | noop | conflict | error | pending
    detail: str
    action: str = ""
    target: Target | None = None
    state: dict[str, Any] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    repeated: bool = False  # a double submit: this is the first attempt's outcome

    @property
    def timed_out(self) -> bool:
        """A gateway call ran out of time (the gateway or its bridge is slow or gone)."""
        for call in self.calls:
            answer = call.get("answer") if isinstance(call.get("answer"), dict) else {}
            if str(call.get("error", "")).startswith(TIMEOUT_CODES):
                return True
            if answer and answer.get("error") in TIMEOUT_CODES:
                return True
        return False


# Reading the store ---------------------------------------------------------------


def find_session(gateway: str, session_key: str) -> Session:
    session = (
        Session.objects.select_related("gateway")
        .filter(gateway__name=gateway, session_key=session_key)
        .first()
    )
    if session is None:
        raise ActionRefused(f"gateway {gateway!r} has no session {session_key!r}")
    return session


def session_state(session: Session) -> dict[str, Any]:
    """What the operator saw: the state an action is judged against and recorded with."""
    now = timezone.now()
    age = (now - session.lock_acquired_at).total_seconds() if session.lock_acquired_at else None
    progress = (
        (now - session.last_progress_at).total_seconds() if session.last_progress_at else None
    )
    return {
        "locked": session.locked,
        "run_id": session.run_id if session.locked else "",
        "phase": session.phase if session.locked else "",
        "result": session.result if session.locked else "",
        "lock_age_s": round(age, 1) if session.locked and age is not None else None,
        "last_progress_s": round(progress, 1) if progress is not None else None,
        "waiters": session.waiter_count,
        "flags": session.flag_count,
        "mode": session.gateway.mode,
    }


def planned_calls(
    action: str, mode: str, target: Target, messages: list[HeldMessage]
) -> list[dict[str, Any]]:
    """The gateway calls an action will make in ``mode``, as ``gateway_bridge`` plans them:
    for the confirmation dialog and the intent."""
    pairs = [(m.preview or m.text, m.idempotency_key) for m in messages]
    calls = commands.plan(action, mode, target.session_key, target.expect_run_id, pairs)
    return [call.as_dict() for call in calls]


def scope_gap(action: str, session: Session) -> str:
    """Why the scopes the gateway granted rule ``action`` out; empty when they do not
    (or are not known yet: the gateway then refuses the call itself, and says so)."""
    gateway = session.gateway
    if gateway.granted_scopes is None:
        return ""
    lacking = missing_for_actions(gateway.mode, gateway.granted_scopes).get(action)
    if not lacking:
        return ""
    return (
        f"The gateway did not grant {' and '.join(lacking)}, which {LABELS[action]} needs "
        f"in {gateway.mode} mode. Nothing was sent: raise the gateway's access level "
        "(and its token's scopes) to allow it."
    )


@dataclass(frozen=True, slots=True)
class Preview:
    """What the confirmation dialog shows before the operator confirms."""

    session: Session
    state: dict[str, Any]
    messages: list[HeldMessage]
    calls: list[dict[str, Any]]
    warning: str
    waiting: int  # messages still waiting: the gateway admits them when the lock clears


def preview(action: str, target: Target) -> Preview:
    if action not in ACTIONS:
        raise ActionRefused(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    session = find_session(target.gateway, target.session_key)
    state = session_state(session)
    messages = held_messages(session) if action in ("requeue", "clear_and_requeue") else []
    warning = scope_gap(action, session)
    progress = state["last_progress_s"]
    recent = progress is not None and progress < RECENT_PROGRESS_S
    if not warning and action in NEEDS_RUN and state["locked"] and recent and not state["result"]:
        warning = (
            f"This run made progress {progress:.0f} s ago: it may still be answering. "
            "Clearing it may cost the user a reply."
        )
    calls = planned_calls(action, session.gateway.mode, target, messages)
    return Preview(session, state, messages, calls, warning, still_waiting(session))


# Acting ---------------------------------------------------------------------------


def _validate(action: str, target: Target, reason: str) -> str:
    if action not in ACTIONS:
        raise ActionRefused(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    reason = reason.strip()
    if not reason:
        raise ActionRefused("a reason is required: say why, it goes into the audit log")
    if len(reason) > REASON_MAX:
        raise ActionRefused(
            f"the reason is too long ({len(reason)} characters, at most {REASON_MAX})"
        )
    if not target.gateway or not target.session_key:
        raise ActionRefused("gateway and session_key are required")
    if action in NEEDS_RUN and not target.expect_run_id:
        raise ActionRefused(
            f"{action} needs expect_run_id: the run you saw holding the lock "
            "(nothing is done if another run holds it now)"
        )
    return reason


@dataclass(slots=True)
class _Attempt:
    action: str
    target: Target
    reason: str
    actor: Actor
    request_id: str
    client_addr: str
    batch: str
    once_key: str
    dry_run: bool
    intent: AuditEntry | None = None
    first: bool = True
    session: Session | None = None
    state: dict[str, Any] = field(default_factory=dict)
    messages: list[HeldMessage] = field(default_factory=list)
    conflict: str = ""
    scope_gap: str = ""


def _read(a: _Attempt) -> None:
    """Read the store and judge the race: is the run the operator saw still the owner?"""
    session = find_session(a.target.gateway, a.target.session_key)
    a.session = session
    a.state = session_state(session)
    a.scope_gap = scope_gap(a.action, session)
    if a.action in ("requeue", "clear_and_requeue"):
        a.messages = held_messages(session)
    expect = a.target.expect_run_id
    if expect and a.state["run_id"] != expect:
        now = (
            f"run {a.state['run_id']} holds it now (phase {a.state['phase'] or '?'})"
            if a.state["locked"]
            else "no run holds it now"
        )
        a.conflict = f"The lock is no longer held by run {expect}: {now}. Nothing was done."


def _write_intent(a: _Attempt) -> None:
    """Write the intent (or find the first submit's, for the same ``once`` key)."""
    assert a.session is not None
    session, expect = a.session, a.target.expect_run_id
    calls = planned_calls(a.action, a.state["mode"], a.target, a.messages)
    fields = {
        "kind": "intent",
        "actor": a.actor.name,
        "actor_kind": a.actor.kind,
        "action": a.action,
        "gateway": a.target.gateway,
        "session_key": a.target.session_key,
        "session_pk": session.pk,
        "expect_run_id": expect,
        "reason": a.reason,
        "batch": a.batch,
        "dry_run": a.dry_run,
        "state_before": a.state,
        "planned_calls": [] if a.conflict or a.scope_gap else calls,
        "request_id": a.request_id,
        "client_addr": a.client_addr,
    }
    if a.once_key:
        a.intent, a.first = audit.append_once(a.once_key, **fields)
    else:
        a.intent = audit.append(**fields)


async def _await_release(a: _Attempt, result: str) -> None:
    """After a successful clear or abort, give the store a moment to mirror the release.

    The gateway answers before its release event reaches the bridge and the
    store; the audit's "state after" should not say the lock is still held.
    Polls from the event loop: ingest writes on the thread this must not block.
    """
    if result != "success" or a.action == "requeue" or a.session is None:
        return
    refresh = sync_to_async(a.session.refresh_from_db)
    deadline = time.monotonic() + SETTLE_WAIT_S
    await refresh()
    while a.session.locked and a.session.run_id == a.target.expect_run_id:
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)
        await refresh()


def _finish(
    a: _Attempt, result: str, detail: str, calls: list[dict[str, Any]], ms: int
) -> dict[str, Any]:
    """Write the outcome; the state after, as recorded."""
    assert a.intent is not None and a.session is not None
    a.session.refresh_from_db()
    entry = append_outcome(
        a.intent,
        actor=a.actor.name,
        actor_kind=a.actor.kind,
        action=a.action,
        gateway=a.target.gateway,
        session_key=a.target.session_key,
        session_pk=a.session.pk,
        result=result,
        detail=detail,
        state_after=session_state(a.session),
        calls=calls,
        duration_ms=ms,
        dry_run=a.dry_run,
    )
    if entry is None:
        # A retry after a write that did land, or marked interrupted meanwhile: keep that one.
        return session_state(a.session)
    counters.count("actions", 1, action=a.action, result=result)
    log.info(
        "action_finished",
        action=a.action,
        actor=a.actor.name,
        gateway=a.target.gateway,
        session_key=a.target.session_key,
        result=result,
        audit_id=a.intent.pk,
        outcome_id=entry.pk,
        duration_ms=ms,
    )
    return entry.state_after


def first_outcome(intent_id: int) -> Outcome:
    """The outcome recorded for an intent, or ``pending`` while it has none.

    An intent past its deadline with no outcome was interrupted: it is marked so now.
    """
    intent = AuditEntry.objects.get(pk=intent_id)
    target = Target(intent.gateway, intent.session_key, intent.expect_run_id)
    done = AuditEntry.objects.filter(intent_id=intent_id, kind="outcome").first()
    if done is None and intent.at < interrupted_before(timezone.now()):
        mark_one_interrupted(intent)
        done = AuditEntry.objects.filter(intent_id=intent_id, kind="outcome").first()
    if done is None:
        return Outcome(intent_id, "pending", "The first submit of this action is still running.",
                       intent.action, target, repeated=True)  # fmt: skip
    return Outcome(intent_id, done.result, done.detail, intent.action, target, done.state_after,
                   list(done.calls), repeated=True)  # fmt: skip


async def perform(
    action: str,
    target: Target,
    *,
    reason: str,
    actor: Actor,
    request_id: str = "",
    client_addr: str = "",
    batch: str = "",
    once_key: str = "",
    dry_run: bool = False,
    timeout_s: float | None = None,
    caller: BridgeCaller = call_bridge,
) -> Outcome:
    """Do one action on one session and audit it; raises ``ActionRefused`` for a bad request.

    ``caller`` reaches the gateway's bridge: over the channel layer by default,
    directly when the caller runs in the bridge's process (recovery).
    """
    reason = _validate(action, target, reason)
    once = f"{once_key}|{target.gateway}|{target.session_key}" if once_key else ""
    a = _Attempt(action, target, reason, actor, request_id, client_addr, batch, once, dry_run)
    await sync_to_async(_read)(a)
    budget = settings.RUNBOARD_CALL_TIMEOUT_S if timeout_s is None else timeout_s
    started = time.monotonic()
    await sync_to_async(_write_intent)(a)
    assert a.intent is not None
    if not a.first:
        outcome = await sync_to_async(first_outcome)(a.intent.pk)
        deadline = time.monotonic() + WAIT_FOR_FIRST_S
        while outcome.result == "pending" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            outcome = await sync_to_async(first_outcome)(a.intent.pk)
        return outcome
    calls: list[dict[str, Any]] = []
    planned = planned_calls(action, a.state["mode"], target, a.messages)
    if a.conflict:
        result, detail = "conflict", a.conflict
    elif a.scope_gap:
        result, detail = "error", a.scope_gap
    elif dry_run:
        result, detail = "noop", "Dry run: nothing was sent to the gateway."
        detail += f" It would have made {len(planned)} call(s)."
    elif not planned:
        result, detail = "noop", NOTHING_TO_REQUEUE
    else:
        result, detail, calls = await _ask_bridge(a, caller, budget)
    ms = int((time.monotonic() - started) * 1000)
    await _await_release(a, result)
    try:
        after = await _finish_with_retries(a, result, detail, calls, ms)
    except DatabaseError as exc:
        # The gateway may have acted: say what it answered rather than a bare 500.
        # The intent stays without an outcome; the next start marks it interrupted.
        log.error("action_outcome_unrecorded", audit_id=a.intent.pk, result=result,
                  error=first_line(exc))  # fmt: skip
        detail += f" {UNRECORDED}"
        return Outcome(a.intent.pk, result, detail, action, target, {}, calls)
    return Outcome(a.intent.pk, result, detail, action, target, after, calls)


async def _finish_with_retries(
    a: _Attempt, result: str, detail: str, calls: list[dict[str, Any]], ms: int
) -> dict[str, Any]:
    """``_finish``, tried again while the database refuses it (down, locked, full)."""
    finish = sync_to_async(_finish)
    for pause in OUTCOME_RETRY_S:
        try:
            return await finish(a, result, detail, calls, ms)
        except IntegrityError:
            raise
        except DatabaseError as exc:
            log.warning("action_outcome_retried", error=first_line(exc))
            await sync_to_async(connection.close)()
            await asyncio.sleep(pause)
    return await finish(a, result, detail, calls, ms)


async def _ask_bridge(
    a: _Attempt, caller: BridgeCaller, budget_s: float
) -> tuple[str, str, list[dict[str, Any]]]:
    """One command to the bridge for the whole action; judge what it reports."""
    params: dict[str, Any] = {
        "session_key": a.target.session_key,
        "run_id": a.target.expect_run_id,
        "reason": a.reason,
        "messages": [[m.text, m.idempotency_key] for m in a.messages],
        "intent": a.intent
        and a.intent.pk,  # the bridge logs these: its line and the audit name each other
        "request_id": a.request_id,
    }
    sent = {"command": a.action, "params": commands.step_params(
        a.action, a.target.session_key, a.target.expect_run_id, a.reason,
        params["messages"])}  # fmt: skip
    try:
        answer = await caller(a.target.gateway, a.action, params, timeout_s=budget_s)
    except GatewayError as exc:
        calls = [{**sent, "error": f"{exc.code}: {exc.message}"}]
        return "error", f"The gateway call failed: {exc.message}", calls
    if not answer.ok:
        calls = [{**sent, "answer": {"error": answer.error_code, "message": answer.error}}]
        return "error", f"The gateway call failed: {answer.error or answer.error_code}", calls
    done = answer.result
    calls = list(done.get("calls") or [])
    result, detail = _judge(a, done)
    return result, detail, calls


def _judge(a: _Attempt, done: dict[str, Any]) -> tuple[str, str]:
    """success, noop, conflict or error, and the words for it, from what the bridge did."""
    run = a.target.expect_run_id
    error = str(done.get("error") or "")
    failed = f"The gateway call failed: {error}"
    if a.action == "abort":
        aborted = done.get("aborted")
        if aborted is None:
            return "error", failed
        if aborted.get("aborted"):
            return "success", f"Run {run} was aborted."
        return "noop", f"The gateway had no run {run} to abort."
    cleared_text = ""
    if a.action in ("force_clear", "clear_and_requeue"):
        cleared = done.get("cleared")
        if cleared is None:
            return "error", failed
        if not cleared.get("cleared"):
            current = cleared.get("current") or {}
            if cleared.get("reason") == "owner_changed":
                return "conflict", (
                    f"The gateway refused: run {current.get('run_id', '?')} holds the lock "
                    f"now (phase {current.get('phase') or '?'}), not {run}. Nothing was done."
                )
            if cleared.get("reason") == "not_locked" and a.action == "force_clear":
                return "noop", "The lock was already released; nothing to clear."
            if cleared.get("reason") != "not_locked":
                return "error", (
                    f"The gateway did not clear the lock ({cleared.get('reason')}). "
                    f"{cleared.get('detail', '')}".strip()
                )
        how = " (observer mode: by chat.abort)" if cleared.get("fallback") else ""
        cleared_text = (
            f"Lock of run {run} cleared{how}."
            if cleared.get("cleared")
            else "The lock was already released."
        )
        if a.action == "force_clear":
            return "success", cleared_text
        if not a.messages:
            return "success", f"{cleared_text} {_admitted(a)}{NOTHING_TO_REQUEUE}"
        if error:
            return "error", f"The gateway call failed after the lock was cleared: {error}"
        return "success", f"{cleared_text} {_admitted(a)}{_requeued(done)}"
    if error:
        return "error", failed
    sent = _requeued(done)
    return ("noop" if sent.startswith("0 ") else "success"), sent


def _admitted(a: _Attempt) -> str:
    waiting = int(a.state.get("waiters") or 0)
    if not waiting:
        return ""
    return f"The gateway admits the {waiting} message(s) that waited behind it itself. "


def _requeued(done: dict[str, Any]) -> str:
    rows = done.get("requeued") or []
    started = sum(1 for r in rows if r.get("status") == "started")
    duplicate = len(rows) - started
    text = f"{started} message(s) requeued"
    if duplicate:
        text += f", {duplicate} already delivered before (not sent again)"
    return text + "."
