"""The registry's state, its outputs, the session store and the read side.

``ReplyRunRegistry`` (``registry.py``) combines this base with the parts that
change state: admission and clears there, waiting in ``waiting.py``, the turn in
``turns.py``, 2026.9's self-healing in ``self_healing.py``. The steps one part
calls in another are declared at the bottom of this class.
"""

from __future__ import annotations

import random
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from simgateway.chatevents import RunEvents
from simgateway.profiles import Knobs, Profile
from simgateway.records import (
    PREVIEW_CHARS,
    ChangeListener,
    ChatRun,
    EventListener,
    LogListener,
    Message,
    Operation,
    SessionRecord,
    Waiter,
    ms,
    parse_session_key,
)
from simgateway.scheduler import Scheduler


class RegistryBase(ABC):
    """What every part of the registry shares; see the module docstring."""

    def __init__(
        self,
        *,
        profile: Profile,
        knobs: Knobs | None = None,
        scheduler: Scheduler | None = None,
        rng: random.Random | None = None,
        boot_id: str | None = None,
        distinct_ids: bool = False,
        reports_store: bool = True,
        waiters_in_active_run_ids: bool = False,
    ) -> None:
        self.profile = profile
        self.knobs = knobs or Knobs()
        self.scheduler = scheduler or Scheduler()
        self.rng = rng or random.Random(0)
        self.boot_id = boot_id or uuid.uuid4().hex
        self.seq = 0
        self.listeners: list[ChangeListener] = []
        self.event_listeners: list[EventListener] = []
        self.log_listeners: list[LogListener] = []
        self.ops: dict[str, Operation] = {}
        self.waiting: dict[str, list[Waiter]] = {}
        self.sessions: dict[str, SessionRecord] = {}
        self.chat_runs: dict[str, ChatRun] = {}
        # 2026.5.3: key → the completed run whose follow-up drain races its clear.
        self.drain_race: dict[str, str] = {}
        self.waiter_serial = 0
        self.op_serial = 0
        self.distinct_ids = distinct_ids
        self.reports_store = reports_store
        self.waiters_in_active_run_ids = waiters_in_active_run_ids

    # --- time and outputs ---------------------------------------------------------

    def now(self) -> float:
        return self.scheduler.clock()

    def change(self, kind: str, *, optional: dict[str, Any] | None = None, **fields: Any) -> int:
        """Append a registry change. ``optional`` fields are left out when None."""
        self.seq += 1
        payload = {"bootId": self.boot_id, "seq": self.seq, "ts": ms(self.now()), "kind": kind}
        payload.update(fields)
        payload.update({k: v for k, v in (optional or {}).items() if v is not None})
        for listener in list(self.listeners):
            listener(payload)
        return self.seq

    def emit_event(self, name: str, payload: dict[str, Any]) -> None:
        for listener in list(self.event_listeners):
            listener(name, payload)

    def log_line(self, level: str, text: str) -> None:
        for listener in list(self.log_listeners):
            listener(level, text)

    def later(self, op: Operation, delay_s: float, callback: Callable[[], None]) -> None:
        op.timers.append(self.scheduler.call_later(delay_s, callback))

    # --- lifecycle of the gateway -------------------------------------------------

    def start(self) -> None:
        """Emit ``started``: always seq 1 of a boot."""
        self.change("started", version=self.profile.version, profile=self.profile.name)

    def stopping(self, reason: str, restart_expected_ms: int | None = None) -> None:
        self.change("stopping", reason=reason, optional={"restartExpectedMs": restart_expected_ms})

    # --- chat runs, and giving up on a message ------------------------------------

    def finish_chat_run(self, run_id: str, status: str) -> RunEvents:
        run = self.chat_runs[run_id]
        run.status = status
        return run.events

    def skip(self, message: Message, reason: str, blocking_run_id: str) -> None:
        key = message.session_key
        self.change(
            "skipped",
            sessionKey=key,
            reason=reason,
            optional={"blockingRunId": blocking_run_id or None},
            messageId=message.run_id,
            preview=message.text[:PREVIEW_CHARS],
            text=message.text,
        )
        self.log_line(
            "debug",
            f"dispatch-from-config: skipped reply operation admission for {key}; reason={reason}",
        )
        self.finish_chat_run(message.run_id, "ok").final_without_message()

    # --- the session store --------------------------------------------------------

    def session_record(self, key: str) -> SessionRecord:
        session = self.sessions.get(key)
        if session is None:
            agent_id, channel = parse_session_key(key)
            session = SessionRecord(key, str(uuid.uuid4()), agent_id, channel, self.now())
            self.sessions[key] = session
        return session

    def set_status(self, key: str, status: str) -> None:
        session = self.session_record(key)
        session.updated_at = self.now()
        if session.status == status:
            return
        session.status = status
        if self.reports_store:
            self.change(
                "session.status", sessionKey=key, status=status, sessionId=session.session_id
            )
        self.emit_event(
            "sessions.changed",
            {"sessionKey": key, "reason": "status", "status": status, "ts": ms(self.now())},
        )

    def record_assistant(self, key: str, text: str) -> None:
        self.session_record(key).history.append(
            {
                "role": "assistant",
                "content": [{"type": "text", "text": text}],
                "timestamp": ms(self.now()),
            }
        )

    def record_user_message(self, message: Message) -> None:
        self.session_record(message.session_key).history.append(
            {
                "role": "user",
                "content": message.text,
                "timestamp": ms(self.now()),
                "idempotencyKey": f"{message.run_id}:user",
            }
        )

    # --- read side ----------------------------------------------------------------

    def entry(self, session_key: str) -> Operation | None:
        return self.ops.get(session_key)

    def waiters(self, session_key: str) -> list[Waiter]:
        return list(self.waiting.get(session_key, []))

    def session(self, session_key: str) -> SessionRecord | None:
        return self.sessions.get(session_key)

    def active_run_ids(self, session_key: str) -> list[str]:
        """Chat runs still executing or waiting (``sessions.list`` ``activeRunIds``).

        A held entry with a terminal result is not active: that is the leak
        the seeds describe, invisible here. Waiting messages are left out, as on
        both real releases, unless ``waiters_in_active_run_ids``."""
        run_ids = []
        if self.waiters_in_active_run_ids:
            run_ids = [w.message.run_id for w in self.waiting.get(session_key, [])]
        op = self.ops.get(session_key)
        if op is not None and op.result is None and op.message.run_id in self.chat_runs:
            run_ids.append(op.run_id)
        return run_ids

    def entry_payload(self, op: Operation) -> dict[str, Any]:
        timestamps = self.profile.tracks_timestamps
        return {
            "sessionKey": op.session_key,
            "sessionId": op.session_id,
            "runId": op.op_id,
            "phase": op.phase,
            "result": None if op.result is None else {"kind": op.result, "code": op.code},
            "turnKind": op.message.turn_kind,
            "startedAtMs": ms(op.started_at) if timestamps else None,
            "lastActivityAtMs": ms(op.last_activity_at) if timestamps else None,
            "waiters": [self.waiter_payload(w) for w in self.waiting.get(op.session_key, [])],
        }

    def waiter_payload(self, waiter: Waiter) -> dict[str, Any]:
        message = waiter.message
        if message.queued or self.profile.waiters_carry_message:
            message_id, text = message.run_id, message.text
        else:
            # 2026.5.x: a registry waiter is a bare promise; its message is unknown here.
            message_id, text = waiter.waiter_id, ""
        return {
            "waiterId": waiter.waiter_id,
            "sinceMs": ms(waiter.since),
            "timeoutMs": waiter.timeout_ms,
            "turnKind": message.turn_kind,
            "messageId": message_id,
            "preview": text[:PREVIEW_CHARS],
            "text": text,
        }

    def snapshot(self) -> dict[str, Any]:
        """The exact registry at ``seq`` (the change numbered ``seq`` included)."""
        return {
            "bootId": self.boot_id,
            "seq": self.seq,
            "ts": ms(self.now()),
            "version": self.profile.version,
            "profile": self.profile.name,
            "entries": [self.entry_payload(op) for op in self.ops.values()],
            "sessions": (
                {k: s.status for k, s in self.sessions.items() if s.status}
                if self.reports_store
                else {}
            ),
        }

    def session_rows(self) -> list[dict[str, Any]]:
        rows = []
        for session in sorted(self.sessions.values(), key=lambda s: -s.updated_at):
            active = self.active_run_ids(session.key)
            row: dict[str, Any] = {
                "key": session.key,
                "sessionId": session.session_id,
                "agentId": session.agent_id,
                "channel": session.channel,
                "status": session.status or None,
                "updatedAt": ms(session.updated_at),
                "hasActiveRun": bool(active),
                "activeRunIds": active,
            }
            if session.started_at is not None:
                row["startedAt"] = ms(session.started_at)
            if session.ended_at is not None:
                row["endedAt"] = ms(session.ended_at)
            rows.append(row)
        return rows

    # --- steps one part calls in another --------------------------------------

    @abstractmethod
    def admit(self, message: Message) -> None:
        """A message asks for the session's lane (``registry.py``)."""

    @abstractmethod
    def clear(self, op: Operation, how: str, detail: str = "") -> int | None:
        """The registry's own clear path (``registry.py``)."""

    @abstractmethod
    def owner_settled(self, op: Operation) -> None:
        """The owner's ``finally`` ran (``registry.py``)."""

    @abstractmethod
    def set_result(self, op: Operation, kind: str, code: str | None) -> None:
        """The operation reached a terminal result (``turns.py``)."""

    @abstractmethod
    def finish_turn(self, op: Operation, status: str, chat: str, *, reply: str = "") -> None:
        """The session store and the chat run learn the turn ended (``turns.py``)."""

    @abstractmethod
    def time_to_stale(self, op: Operation) -> float:
        """Seconds until 2026.9 would take the operation over (``self_healing.py``)."""

    @abstractmethod
    def expire_if_stale(self, op: Operation) -> bool:
        """2026.9: release a stale or settled operation now (``self_healing.py``)."""

    @abstractmethod
    def forced_settle(self, op: Operation) -> None:
        """2026.9: release a terminal operation past its settle time (``self_healing.py``)."""
