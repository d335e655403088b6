"""What the bridge's commands answer, as plain values the store's side can record.

Each result also knows its JSON form (``as_dict``): the web process receives
it over the channel layer and the audit log keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway_bridge.events import SnapshotEntry


@dataclass(frozen=True, slots=True)
class ForceClearResult:
    """A compare-and-clear's answer.

    Cleared: ``run_id`` is the run that was cleared, ``phase`` its phase and
    ``seq`` the registry change that released it. Refused: ``reason`` is
    ``owner_changed`` (``current`` is the entry that holds the lock now) or
    ``not_locked`` (``current`` is None); ``run_id`` is "".

    In observer mode (no plugin) ``fallback`` is ``"chat.abort"``: the run was
    aborted, not cleared from the registry, and ``detail`` says what that
    means; ``seq`` is None and a refusal may also be ``abort_refused`` (the
    gateway did not abort the run).
    """

    cleared: bool
    session_key: str
    run_id: str
    reason: str
    current: SnapshotEntry | None
    phase: str = ""
    seq: int | None = None
    fallback: str = ""
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        current = self.current
        return {
            "cleared": self.cleared,
            "run_id": self.run_id,
            "reason": self.reason,
            "phase": self.phase,
            "seq": self.seq,
            "fallback": self.fallback,
            "detail": self.detail,
            "current": None
            if current is None
            else {"run_id": current.run_id, "phase": current.phase, "result": current.result},
        }


@dataclass(frozen=True, slots=True)
class RequeueResult:
    idempotency_key: str
    run_id: str
    status: str  # started | duplicate
    fallback: str = ""  # "chat.send" in observer mode

    def as_dict(self) -> dict[str, Any]:
        return {
            "idempotency_key": self.idempotency_key,
            "run_id": self.run_id,
            "status": self.status,
            "fallback": self.fallback,
        }


@dataclass(frozen=True, slots=True)
class AbortResult:
    aborted: bool
    run_ids: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"aborted": self.aborted, "run_ids": list(self.run_ids)}


@dataclass(frozen=True, slots=True)
class CallMade:
    """One step of an action as it went: the bridge command, the gateway method it used,
    what it was given (message texts cut to a preview) and the gateway's answer or error."""

    command: str  # force_clear | requeue | abort
    method: str
    params: dict[str, Any]
    answer: dict[str, Any] | None = None
    error_code: str = ""
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "command": self.command,
            "method": self.method,
            "params": self.params,
        }
        if self.answer is not None:
            out["answer"] = self.answer
        if self.error_code:
            out["error"] = f"{self.error_code}: {self.error}"
        return out


@dataclass(frozen=True, slots=True)
class ActionResult:
    """An operator action as the bridge carried it out, in the mode it chose once.

    ``calls`` are the steps made, in order; a step that failed is the last one
    and ``error_code``/``error`` repeat its error. ``cleared``, ``requeued``
    and ``aborted`` are the answers of the steps that succeeded.
    """

    action: str
    mode: str  # plugin | observer
    calls: tuple[CallMade, ...] = ()
    cleared: ForceClearResult | None = None
    requeued: tuple[RequeueResult, ...] = ()
    aborted: AbortResult | None = None
    error_code: str = ""
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "mode": self.mode,
            "calls": [c.as_dict() for c in self.calls],
            "cleared": None if self.cleared is None else self.cleared.as_dict(),
            "requeued": [r.as_dict() for r in self.requeued],
            "aborted": None if self.aborted is None else self.aborted.as_dict(),
            "error_code": self.error_code,
            "error": self.error,
        }
