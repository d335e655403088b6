"""OpenClaw's reply-run registry, simulated: one active operation per session key.

Plain Python, single-threaded, driven by a ``Scheduler`` with an injectable
clock (``ManualClock`` in tests). It follows openclaw-internals.md §1:

- admission: no entry → ``owned``; an entry → the message waits
  (``waitForIdle``; on 2026.9 a visible message goes to the session's
  follow-up queue instead and later runs as a ``queued_followup``
  operation) or, for heartbeat/control_abort turns, is ``skipped``;
- phases ``queued → (preflight_compacting, memory_flushing) → running →
  (2026.9: waiting_for_global_lane → running) → completed | failed |
  aborted``, then the clear step releases the key and wakes every waiter
  (they retry admission in arrival order); 2026.5.28 then runs an empty
  follow-up drain operation;
- per-profile failures: an aborted running operation whose backend ignores
  the cancel (``WEDGE``) is never completed by its owner: 2026.5.x leak the
  entry for good (seed 1) and wait forever on visible turns; 2026.5.3 fails
  the next message after a completed run with ``ReplyRunAlreadyActiveError``;
  2026.9 forces release ``terminal_settle_s`` after a terminal result and
  takes over stale operations. Like the real code, staleness is judged when
  admission needs the lane (a new message, each wait slice), not by a
  background reaper.

Options for tests (docs/protocol.md §3): ``distinct_ids`` gives registry
operations their own ids (``op-<boot>-<n>``, as the companion plugin does)
instead of the chat run id; ``reports_store=False`` leaves the session store
out of the registry (snapshot ``sessions: {}``, no ``session.status``), as the
plugin does; ``waiters_in_active_run_ids`` lists waiting messages' run ids in
``sessions.list`` ``activeRunIds``, which no real release does.

Three outputs, each a list of callbacks: ``listeners`` get every registry
change (the ``runboard.registry`` wire payload, ``seq`` 1, 2, …),
``event_listeners`` get gateway protocol events (``agent``, ``chat``,
``sessions.changed``), ``log_listeners`` get gateway log lines (level, text).

This module holds admission, aborts and clears; the state, outputs and read side
are in ``registry_base.py``, waiting in ``waiting.py``, the turn in ``turns.py``
and 2026.9's self-healing in ``self_healing.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from simgateway.backend import plan_turn
from simgateway.chatevents import RunEvents
from simgateway.records import (
    CLEARED_REPLY,
    DRAIN_FAILED_REPLY,
    PREVIEW_CHARS,
    TEXT_CHARS,
    UNINTERRUPTIBLE_KINDS,
    ChatRun,
    Message,
    Operation,
    ms,
)
from simgateway.self_healing import SelfHealing
from simgateway.turns import Turns
from simgateway.waiting import Waiting


class ReplyRunRegistry(Turns, Waiting, SelfHealing):
    """The simulated registry: admission and clears here, the other parts in their modules."""

    # --- inbound messages ---------------------------------------------------------

    def dispatch(
        self,
        session_key: str,
        text: str,
        *,
        turn_kind: str = "visible",
        idempotency_key: str | None = None,
    ) -> tuple[str, str]:
        """A message arrives for a session. Returns (run id, chat.send status)."""
        if idempotency_key is not None and idempotency_key in self.chat_runs:
            return idempotency_key, self.chat_runs[idempotency_key].status
        run_id = idempotency_key or str(uuid.uuid4())
        session = self.session_record(session_key)
        events = RunEvents(
            self.emit_event,
            run_id=run_id,
            session_key=session_key,
            session_id=session.session_id,
            agent_id=session.agent_id or "main",
        )
        self.chat_runs[run_id] = ChatRun(session_key, events)
        self.admit(Message(run_id, session_key, text[:TEXT_CHARS], turn_kind))
        return run_id, "started"

    def has_seen(self, idempotency_key: str) -> bool:
        return idempotency_key in self.chat_runs

    def requeue(
        self, session_key: str, messages: Sequence[tuple[str, str]]
    ) -> list[dict[str, str]]:
        """Dispatch (text, idempotency key) pairs as visible messages; skip keys seen before."""
        results = []
        for text, key in messages:
            if self.has_seen(key):
                results.append({"idempotencyKey": key, "runId": key, "status": "duplicate"})
                continue
            run_id, _ = self.dispatch(session_key, text, idempotency_key=key)
            results.append({"idempotencyKey": key, "runId": run_id, "status": "started"})
        return results

    def admit(self, message: Message) -> None:
        key = message.session_key
        op = self.ops.get(key)
        if op is None:
            if key in self.drain_race:
                self._fail_drain(message, self.drain_race.pop(key))
            else:
                self._acquire(message)
            return
        if self.profile.self_heals and self.expire_if_stale(op):
            self.admit(message)
            return
        if message.turn_kind in UNINTERRUPTIBLE_KINDS:
            self.skip(message, "active-run", op.op_id)
            return
        if message.turn_kind == "visible" and self.profile.busy_message_queues_followup:
            # 2026.9: the busy session's follow-up queue takes it; it runs later as its
            # own queued_followup operation.
            message.queued = True
            message.turn_kind = "queued_followup"
        self.add_waiter(message, op)

    def _next_op_id(self, fallback: str) -> str:
        if not self.distinct_ids:
            return fallback
        self.op_serial += 1
        return f"op-{self.boot_id[:8]}-{self.op_serial}"

    def _acquire(self, message: Message) -> None:
        session = self.session_record(message.session_key)
        now = self.now()
        op = Operation(
            message,
            session.session_id,
            now,
            now,
            self.chat_runs[message.run_id].events,
            op_id=self._next_op_id(message.run_id),
        )
        # The backend is chosen with the turn: a wedged one ignores a cancel from the start.
        knobs = self.knobs
        op.plan = plan_turn(
            message.text, self.rng, median_s=knobs.turn_median_s, cap_s=knobs.turn_cap_s
        )
        self.ops[message.session_key] = op
        self.change(
            "acquired",
            sessionKey=op.session_key,
            runId=op.op_id,
            sessionId=op.session_id,
            phase=op.phase,
            turnKind=message.turn_kind,
            messageId=message.run_id,
            preview=message.text[:PREVIEW_CHARS],
        )
        if not self.profile.history_on_completion:
            self.record_user_message(message)
        self.later(op, self.knobs.queue_delay_s, lambda: self.prepare(op))

    def _fail_drain(self, message: Message, blocking_run_id: str) -> None:
        """2026.5.3: the follow-up drain created a new operation before the old one cleared."""
        key = message.session_key
        error_message = f"Reply run already active for {key}"
        self.change(
            "drain.failed",
            sessionKey=key,
            error="ReplyRunAlreadyActiveError",
            message=error_message,
            blockingRunId=blocking_run_id,
            messageId=message.run_id,
            preview=message.text[:PREVIEW_CHARS],
            text=message.text,
        )
        self.log_line(
            "error",
            f"followup queue drain failed for {key}: ReplyRunAlreadyActiveError: {error_message}",
        )
        events = self.finish_chat_run(message.run_id, "ok")
        events.final_text(DRAIN_FAILED_REPLY, ms(self.now()))

    # --- aborts and clears --------------------------------------------------------

    def abort(self, session_key: str, run_id: str | None = None) -> list[str]:
        """``chat.abort``: abort the waiting messages, then the owner. Returns aborted run ids."""
        aborted = []
        for waiter in list(self.waiting.get(session_key, [])):
            if run_id in (None, waiter.message.run_id) and self.remove_waiter(waiter):
                self.resolve_waiter(waiter, "aborted")
                self.skip(waiter.message, "aborted", waiter.blocking_run_id)
                aborted.append(waiter.message.run_id)
        op = self.ops.get(session_key)
        if op is not None and run_id in (None, op.run_id) and self._abort_operation(op):
            aborted.append(op.run_id)
        return aborted

    def _abort_operation(self, op: Operation) -> bool:
        """``abortByUser``: only a queued operation is cleared here; a running one
        relies on its owner's ``finally`` to complete it."""
        if op.result is not None:
            return False
        was_queued = op.phase == "queued"
        op.cancel_timers()
        self.set_result(op, "aborted", "aborted_by_user")
        op.events.aborted(ms(op.started_at), ms(self.now()))
        self.finish_chat_run(op.run_id, "ok")
        if was_queued:
            self.clear(op, "normal")
            return True
        self.set_status(op.session_key, "killed")
        # A backend that ignores the cancel (WEDGE) never hands control back, so the
        # owner never completes: the entry stays, terminal but held (2026.5.x: for good,
        # seed 1; 2026.9: until the forced settle).
        owner_resumes = not (op.plan is not None and op.plan.ignores_cancel)
        if owner_resumes:
            self.later(op, self.knobs.cancel_settle_s, lambda: self.owner_settled(op))
        return True

    def owner_settled(self, op: Operation) -> None:
        """The owner's ``finally`` ran: it completes and clears the entry, then (2026.5.28)
        drains the session's follow-up queue with an operation of its own."""
        if self.clear(op, "normal") is None:
            return
        if self.profile.empty_drain_operation and op.message.turn_kind == "visible":
            self._empty_drain(op.session_key)

    def _empty_drain(self, session_key: str) -> None:
        """2026.5.28: the follow-up drain takes the lock for an operation with nothing to
        do, which completes at once (seen after every visible turn)."""
        if session_key in self.ops:
            return  # a woken waiter took the lock first
        session = self.session_record(session_key)
        drain_id = f"drain-{uuid.uuid4()}"
        message = Message(drain_id, session_key, "", "queued_followup")
        events = RunEvents(
            self.emit_event,
            run_id=drain_id,
            session_key=session_key,
            session_id=session.session_id,
            agent_id=session.agent_id or "main",
        )
        now = self.now()
        op = Operation(
            message, session.session_id, now, now, events, op_id=self._next_op_id(drain_id)
        )
        self.ops[session_key] = op
        self.change(
            "acquired",
            sessionKey=session_key,
            runId=op.op_id,
            sessionId=op.session_id,
            phase=op.phase,
            turnKind=message.turn_kind,
        )
        op.result, op.ended_at = "completed", now
        self.change("ended", sessionKey=session_key, runId=op.op_id, result="completed")
        self.clear(op, "normal")

    def force_clear(self, session_key: str, expect_run_id: str, reason: str) -> dict[str, Any]:
        """Compare-and-clear (docs/protocol.md §2): only if ``expect_run_id`` still owns the key."""
        op = self.ops.get(session_key)
        if op is None:
            return {
                "cleared": False,
                "sessionKey": session_key,
                "reason": "not_locked",
                "current": None,
            }
        if op.op_id != expect_run_id:
            return {
                "cleared": False,
                "sessionKey": session_key,
                "reason": "owner_changed",
                "current": self.entry_payload(op),
            }
        op.cancel_timers()
        if op.result is None:
            # As the companion plugin does: abortByUser() first (cancels the backend),
            # then the registry's own clear path.
            self.set_result(op, "aborted", "aborted_by_user")
            op.cancel_timers()  # no forced settle: the entry is cleared now
            op.events.aborted(ms(op.started_at), ms(self.now()))
            self.finish_turn(op, "killed", "ok")
            if self.profile.clear_leaves_reply:
                self.record_assistant(op.session_key, CLEARED_REPLY)
        self.log_line(
            "warn",
            f"reply run force cleared sessionKey={session_key} runId={op.op_id} reason={reason}",
        )
        seq = self.clear(op, "force_clear", reason)
        return {
            "cleared": True,
            "sessionKey": session_key,
            "runId": op.op_id,
            "phase": op.phase,
            "seq": seq,
        }

    def clear(self, op: Operation, how: str, detail: str = "") -> int | None:
        """The registry's own clear path: drop the entry, then wake its waiters."""
        if self.ops.get(op.session_key) is not op:
            return None
        del self.ops[op.session_key]
        op.cancel_timers()
        seq = self.change(
            "released",
            sessionKey=op.session_key,
            runId=op.op_id,
            how=how,
            optional={"detail": detail or None},
        )
        self.wake_waiters(op.session_key)
        return seq
