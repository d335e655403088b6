"""Operator actions as the gateway sees them: which calls each makes, and making them.

``plan`` says which gateway calls an action makes in a mode (for the
confirmation dialog and the audit's intent); ``carry_out`` makes them through
a mode's commands within one deadline and reports every step it made, so the
store's side records what happened without knowing a gateway method's name.
Nothing is retried: a step that fails ends the action, and says so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from gateway_bridge.errors import GatewayError, GatewayTimeout
from gateway_bridge.feed import Mode
from gateway_bridge.observer.mode import ABORT_FALLBACK, SEND_FALLBACK
from gateway_bridge.plugin import FORCE_CLEAR, REQUEUE
from gateway_bridge.results import AbortResult, ActionResult, CallMade

ACTIONS = ("force_clear", "requeue", "abort", "clear_and_requeue")
ABORT = "chat.abort"
MAX_REQUEUE_MESSAGES = 50
PREVIEW_CHARS = 80
# A step needs at least this much of the deadline left to be started.
MIN_STEP_S = 0.05
OBSERVER_CLEAR_NOTE = "observer mode: the run is aborted, not cleared from the registry"

AbortCall = Callable[[str, str], Awaitable[AbortResult]]


@dataclass(frozen=True, slots=True)
class GatewayCall:
    """A call an action will make: the gateway method and what it is given."""

    command: str  # force_clear | requeue | abort: the bridge's step
    method: str
    params: dict[str, Any]
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "params": self.params}
        if self.note:
            out["note"] = self.note
        return out


def plan(
    action: str, mode: str, session_key: str, run_id: str, messages: Sequence[tuple[str, str]]
) -> list[GatewayCall]:
    """The gateway calls ``action`` makes in ``mode`` (plugin or observer).

    ``messages`` are (text or preview, idempotency key) pairs; a requeue with
    none makes no call.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    observer = mode == "observer"
    clear = (
        GatewayCall("force_clear", ABORT_FALLBACK, {"sessionKey": session_key, "runId": run_id},
                    OBSERVER_CLEAR_NOTE)
        if observer
        else GatewayCall("force_clear", FORCE_CLEAR,
                         {"sessionKey": session_key, "expectRunId": run_id})
    )  # fmt: skip
    previews = [{"idempotencyKey": key, "preview": text[:PREVIEW_CHARS]} for text, key in messages]
    requeue = GatewayCall(
        "requeue",
        SEND_FALLBACK if observer else REQUEUE,
        {"sessionKey": session_key, "messages": previews},
    )
    abort = GatewayCall("abort", ABORT, {"sessionKey": session_key, "runId": run_id})
    return {
        "force_clear": [clear],
        "requeue": [requeue] if messages else [],
        "abort": [abort],
        "clear_and_requeue": [clear, requeue] if messages else [clear],
    }[action]


async def carry_out(
    action: str,
    mode: Mode,
    abort: AbortCall,
    *,
    session_key: str,
    run_id: str,
    reason: str,
    messages: Sequence[tuple[str, str]],
    timeout_s: float,
) -> ActionResult:
    """Make ``action``'s calls in ``mode``, step by step, within ``timeout_s`` in all.

    A refused clear (another owner, or the gateway would not) ends the action
    before its requeue; a clear that found no lock still requeues.
    """
    if not session_key or (action != "requeue" and not run_id):
        raise ValueError(f"{action} needs a session key and the run id")
    if action in ("force_clear", "clear_and_requeue") and not reason.strip():
        raise ValueError("force_clear needs a reason")
    if len(messages) > MAX_REQUEUE_MESSAGES:
        raise ValueError(f"requeue takes at most {MAX_REQUEUE_MESSAGES} messages")
    deadline = time.monotonic() + timeout_s
    made: list[CallMade] = []
    result = ActionResult(action, mode.name)
    for call in plan(action, mode.name, session_key, run_id, messages):
        remaining = deadline - time.monotonic()
        if remaining <= MIN_STEP_S:
            error = GatewayError("no time left in the action's deadline for the next call")
            return failed(result, made, error)
        params = step_params(call.command, session_key, run_id, reason, messages)
        try:
            async with asyncio.timeout(remaining):
                if call.command == "force_clear":
                    cleared = await mode.force_clear(session_key, run_id, reason)
                    result = replace(result, cleared=cleared)
                    made.append(CallMade(call.command, call.method, params, cleared.as_dict()))
                    if not cleared.cleared and cleared.reason != "not_locked":
                        break
                elif call.command == "requeue":
                    requeued = await mode.requeue(session_key, messages)
                    answer = {"results": [r.as_dict() for r in requeued]}
                    result = replace(result, requeued=tuple(requeued))
                    made.append(CallMade(call.command, call.method, params, answer))
                else:
                    aborted = await abort(session_key, run_id)
                    result = replace(result, aborted=aborted)
                    made.append(CallMade(call.command, call.method, params, aborted.as_dict()))
        except TimeoutError:
            error = GatewayTimeout(
                f"the gateway did not answer {call.command} in time; it may still act on it"
            )
            made.append(
                CallMade(call.command, call.method, params, None, error.code, error.message)
            )
            return failed(result, made, error)
        except GatewayError as exc:
            made.append(CallMade(call.command, call.method, params, None, exc.code, exc.message))
            return failed(result, made, exc)
    return replace(result, calls=tuple(made))


def step_params(
    command: str, session_key: str, run_id: str, reason: str, messages: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """A step as the audit records it: message texts cut to a preview."""
    if command == "force_clear":
        return {"session_key": session_key, "expect_run_id": run_id, "reason": reason}
    if command == "requeue":
        previews = [{"preview": text[:PREVIEW_CHARS], "idempotency_key": key}
                    for text, key in messages]  # fmt: skip
        return {"session_key": session_key, "messages": previews}
    return {"session_key": session_key, "run_id": run_id}


def failed(result: ActionResult, made: list[CallMade], error: GatewayError) -> ActionResult:
    return replace(result, calls=tuple(made), error_code=error.code, error=error.message)
