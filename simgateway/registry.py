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
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from simgateway.backend import TurnPlan, plan_turn
from simgateway.chatevents import RunEvents
from simgateway.profiles import Knobs, Profile
from simgateway.scheduler import Scheduler, Timer

PREVIEW_CHARS = 120
TEXT_CHARS = 8000
DRAIN_FAILED_REPLY = "⚠️ Previous run is still shutting down. Please try again in a moment."
# What 2026.9.6 put in chat.history for a force-cleared turn (the recorded text, cut short).
CLEARED_REPLY = "OpenClaw couldn't produce or deliver a reply…"
UNINTERRUPTIBLE_KINDS = frozenset({"heartbeat", "control_abort"})

ChangeListener = Callable[[dict[str, Any]], None]
EventListener = Callable[[str, dict[str, Any]], None]
LogListener = Callable[[str, str], None]


def ms(seconds: float) -> int:
    return int(seconds * 1000)


@dataclass(slots=True)
class Message:
    """One inbound message. Its id is also the run id it will run under."""

    run_id: str
    session_key: str
    text: str
    turn_kind: str
    # In the session's follow-up queue (2026.9), not in the registry's waitForIdle.
    queued: bool = False


@dataclass(slots=True)
class Waiter:
    waiter_id: str
    message: Message
    since: float
    timeout_ms: int | None
    blocking_run_id: str
    timer: Timer | None = None


@dataclass(slots=True)
class Operation:
    """A live registry entry (``ReplyOperation``): the session key is locked."""

    message: Message
    session_id: str
    started_at: float
    last_activity_at: float
    events: RunEvents
    # The id the registry reports: the chat run id, or its own (``distinct_ids``).
    op_id: str
    phase: str = "queued"
    result: str | None = None
    code: str | None = None
    ended_at: float | None = None
    plan: TurnPlan | None = None
    in_tool_call: bool = False
    timers: list[Timer] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.message.run_id

    @property
    def session_key(self) -> str:
        return self.message.session_key

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()


@dataclass(slots=True)
class SessionRecord:
    """The persisted session store's row for a key (``sessions.json``)."""

    key: str
    session_id: str
    agent_id: str
    channel: str
    updated_at: float
    status: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class ChatRun:
    """The gateway's view of a chat run, for ``chat.send`` idempotency."""

    session_key: str
    events: RunEvents
    status: str = "in_flight"  # in_flight | ok | error


def parse_session_key(key: str) -> tuple[str, str]:
    """``agent:<agent>:<channel>:direct:<peer>`` → (agent, channel); blanks when absent."""
    parts = key.split(":")
    if len(parts) < 2 or parts[0] != "agent":
        return "", ""
    return parts[1], parts[2] if len(parts) >= 4 else ""


class ReplyRunRegistry:
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
        self._ops: dict[str, Operation] = {}
        self._waiters: dict[str, list[Waiter]] = {}
        self._sessions: dict[str, SessionRecord] = {}
        self._runs: dict[str, ChatRun] = {}
        # 2026.5.3: key → the completed run whose follow-up drain races its clear.
        self._drain_race: dict[str, str] = {}
        self._waiter_ids = 0
        self._op_ids = 0
        self.distinct_ids = distinct_ids
        self.reports_store = reports_store
        self.waiters_in_active_run_ids = waiters_in_active_run_ids

    # --- time and outputs -----------------------------------------------------

    def now(self) -> float:
        return self.scheduler.clock()

    def _change(self, kind: str, *, optional: dict[str, Any] | None = None, **fields: Any) -> int:
        """Append a registry change. ``optional`` fields are left out when None."""
        self.seq += 1
        payload = {"bootId": self.boot_id, "seq": self.seq, "ts": ms(self.now()), "kind": kind}
        payload.update(fields)
        payload.update({k: v for k, v in (optional or {}).items() if v is not None})
        for listener in list(self.listeners):
            listener(payload)
        return self.seq

    def _event(self, name: str, payload: dict[str, Any]) -> None:
        for listener in list(self.event_listeners):
            listener(name, payload)

    def _log(self, level: str, text: str) -> None:
        for listener in list(self.log_listeners):
            listener(level, text)

    def _later(self, op: Operation, delay_s: float, callback: Callable[[], None]) -> None:
        op.timers.append(self.scheduler.call_later(delay_s, callback))

    # --- lifecycle of the gateway ---------------------------------------------

    def start(self) -> None:
        """Emit ``started``: always seq 1 of a boot."""
        self._change("started", version=self.profile.version, profile=self.profile.name)

    def stopping(self, reason: str, restart_expected_ms: int | None = None) -> None:
        self._change("stopping", reason=reason, optional={"restartExpectedMs": restart_expected_ms})

    # --- inbound messages -----------------------------------------------------

    def dispatch(
        self,
        session_key: str,
        text: str,
        *,
        turn_kind: str = "visible",
        idempotency_key: str | None = None,
    ) -> tuple[str, str]:
        """A message arrives for a session. Returns (run id, chat.send status)."""
        if idempotency_key is not None and idempotency_key in self._runs:
            return idempotency_key, self._runs[idempotency_key].status
        run_id = idempotency_key or str(uuid.uuid4())
        session = self._session(session_key)
        events = RunEvents(
            self._event,
            run_id=run_id,
            session_key=session_key,
            session_id=session.session_id,
            agent_id=session.agent_id or "main",
        )
        self._runs[run_id] = ChatRun(session_key, events)
        self._admit(Message(run_id, session_key, text[:TEXT_CHARS], turn_kind))
        return run_id, "started"

    def has_seen(self, idempotency_key: str) -> bool:
        return idempotency_key in self._runs

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

    def _admit(self, message: Message) -> None:
        key = message.session_key
        op = self._ops.get(key)
        if op is None:
            if key in self._drain_race:
                self._fail_drain(message, self._drain_race.pop(key))
            else:
                self._acquire(message)
            return
        if self.profile.self_heals and self._expire_if_stale(op):
            self._admit(message)
            return
        if message.turn_kind in UNINTERRUPTIBLE_KINDS:
            self._skip(message, "active-run", op.op_id)
            return
        if message.turn_kind == "visible" and self.profile.busy_message_queues_followup:
            # 2026.9: the busy session's follow-up queue takes it; it runs later as its
            # own queued_followup operation.
            message.queued = True
            message.turn_kind = "queued_followup"
        self._add_waiter(message, op)

    def _next_op_id(self, fallback: str) -> str:
        if not self.distinct_ids:
            return fallback
        self._op_ids += 1
        return f"op-{self.boot_id[:8]}-{self._op_ids}"

    def _acquire(self, message: Message) -> None:
        session = self._session(message.session_key)
        now = self.now()
        op = Operation(
            message,
            session.session_id,
            now,
            now,
            self._runs[message.run_id].events,
            op_id=self._next_op_id(message.run_id),
        )
        # The backend is chosen with the turn: a wedged one ignores a cancel from the start.
        knobs = self.knobs
        op.plan = plan_turn(
            message.text, self.rng, median_s=knobs.turn_median_s, cap_s=knobs.turn_cap_s
        )
        self._ops[message.session_key] = op
        self._change(
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
            self._record_user_message(message)
        self._later(op, self.knobs.queue_delay_s, lambda: self._prepare(op))

    # --- waiting --------------------------------------------------------------

    def _add_waiter(self, message: Message, op: Operation) -> None:
        self._waiter_ids += 1
        waiter = Waiter(
            waiter_id=f"w-{self._waiter_ids}",
            message=message,
            since=self.now(),
            timeout_ms=self._wait_timeout_ms(message),
            blocking_run_id=op.op_id,
        )
        self._waiters.setdefault(message.session_key, []).append(waiter)
        shown = self._waiter_entry(waiter)
        self._change(
            "waiter.added",
            sessionKey=message.session_key,
            waiterId=waiter.waiter_id,
            timeoutMs=waiter.timeout_ms,
            turnKind=message.turn_kind,
            blockingRunId=op.op_id,
            messageId=shown["messageId"],
            preview=shown["preview"],
            text=shown["text"],
        )
        if message.queued:
            # Nothing times a follow-up queue item out. The simulation still re-checks
            # the owner's staleness each slice (docs/protocol.md §3).
            if self.profile.self_heals:
                self._arm_slice(waiter, op)
        elif message.turn_kind == "queued_followup":
            waiter.timer = self.scheduler.call_later(
                self.knobs.followup_wait_s, lambda: self._waiter_timed_out(waiter)
            )
        elif self.profile.visible_wait_bounded:
            self._arm_slice(waiter, op)

    def _wait_timeout_ms(self, message: Message) -> int | None:
        turn_kind = message.turn_kind
        if message.queued:
            return None  # the follow-up queue: no timer
        if turn_kind == "queued_followup":
            return ms(self.knobs.followup_wait_s)
        if self.profile.visible_wait_bounded:
            return ms(self.knobs.wait_slice_s)
        return None  # visible turns on 5.x: waitForIdle with no timer at all

    def _arm_slice(self, waiter: Waiter, op: Operation) -> None:
        delay = min(self.knobs.wait_slice_s, self._time_to_stale(op))
        waiter.timer = self.scheduler.call_later(
            max(delay, 0.001), lambda: self._slice_elapsed(waiter)
        )

    def _slice_elapsed(self, waiter: Waiter) -> None:
        """2026.9: a wait slice ended. Re-check the owner; wait another slice if it is healthy."""
        key = waiter.message.session_key
        if waiter not in self._waiters.get(key, []):
            return
        op = self._ops.get(key)
        if op is None or self._expire_if_stale(op):
            return
        self._arm_slice(waiter, op)

    def _waiter_timed_out(self, waiter: Waiter) -> None:
        if not self._remove_waiter(waiter):
            return
        self._resolve_waiter(waiter, "timed_out")
        self._skip(waiter.message, "active-run", waiter.blocking_run_id)

    def _remove_waiter(self, waiter: Waiter) -> bool:
        waiters = self._waiters.get(waiter.message.session_key, [])
        if waiter not in waiters:
            return False
        waiters.remove(waiter)
        if waiter.timer is not None:
            waiter.timer.cancel()
        return True

    def _resolve_waiter(self, waiter: Waiter, outcome: str) -> None:
        self._change(
            "waiter.resolved",
            sessionKey=waiter.message.session_key,
            waiterId=waiter.waiter_id,
            outcome=outcome,
        )

    def _wake_waiters(self, key: str) -> None:
        """The entry was cleared: every waiter wakes and retries admission, oldest first."""
        waiters = self._waiters.pop(key, [])
        for waiter in waiters:
            if waiter.timer is not None:
                waiter.timer.cancel()
            self._resolve_waiter(waiter, "admitted")
        for waiter in waiters:
            self._admit(waiter.message)

    # --- giving up on a message -----------------------------------------------

    def _skip(self, message: Message, reason: str, blocking_run_id: str) -> None:
        key = message.session_key
        self._change(
            "skipped",
            sessionKey=key,
            reason=reason,
            optional={"blockingRunId": blocking_run_id or None},
            messageId=message.run_id,
            preview=message.text[:PREVIEW_CHARS],
            text=message.text,
        )
        self._log(
            "debug",
            f"dispatch-from-config: skipped reply operation admission for {key}; reason={reason}",
        )
        self._finish_chat_run(message.run_id, "ok").final_without_message()

    def _fail_drain(self, message: Message, blocking_run_id: str) -> None:
        """2026.5.3: the follow-up drain created a new operation before the old one cleared."""
        key = message.session_key
        error_message = f"Reply run already active for {key}"
        self._change(
            "drain.failed",
            sessionKey=key,
            error="ReplyRunAlreadyActiveError",
            message=error_message,
            blockingRunId=blocking_run_id,
            messageId=message.run_id,
            preview=message.text[:PREVIEW_CHARS],
            text=message.text,
        )
        self._log(
            "error",
            f"followup queue drain failed for {key}: ReplyRunAlreadyActiveError: {error_message}",
        )
        events = self._finish_chat_run(message.run_id, "ok")
        events.final_text(DRAIN_FAILED_REPLY, ms(self.now()))

    def _finish_chat_run(self, run_id: str, status: str) -> RunEvents:
        run = self._runs[run_id]
        run.status = status
        return run.events

    # --- the turn ---------------------------------------------------------------

    def _is_live(self, op: Operation) -> bool:
        return self._ops.get(op.session_key) is op and op.result is None

    def _prepare(self, op: Operation) -> None:
        if not self._is_live(op):
            return
        steps = []
        if self.rng.random() < self.knobs.compaction_rate:
            steps.append("preflight_compacting")
        if self.rng.random() < self.knobs.memory_flush_rate:
            steps.append("memory_flushing")
        steps.append("running")
        if self.profile.global_lane_phase:
            steps += ["waiting_for_global_lane", "running"]
        self._step_phases(op, steps)

    def _step_phases(self, op: Operation, steps: list[str]) -> None:
        if not self._is_live(op):
            return
        self._set_phase(op, steps[0])
        if len(steps) > 1:
            self._later(op, self.knobs.phase_step_s, lambda: self._step_phases(op, steps[1:]))
        else:
            self._start_model(op)

    def _set_phase(self, op: Operation, phase: str) -> None:
        op.phase = phase
        op.last_activity_at = self.now()
        self._change("phase", sessionKey=op.session_key, runId=op.op_id, phase=phase)

    def _start_model(self, op: Operation) -> None:
        knobs = self.knobs
        assert op.plan is not None
        plan = op.plan
        now = self.now()
        session = self._session(op.session_key)
        session.started_at = now
        self._set_status(op.session_key, "running")
        op.events.started(ms(now))
        if plan.tool_call:
            op.in_tool_call = True
            self._activity(op, "tool_call")
            op.events.tool_call(ms(now))
        if plan.streams:
            self._later(op, knobs.activity_interval_s, lambda: self._stream(op))
        if plan.duration_s is not None:
            self._later(op, plan.duration_s, lambda: self._model_answered(op))

    def _activity(self, op: Operation, activity: str) -> None:
        op.last_activity_at = self.now()
        self._change("activity", sessionKey=op.session_key, runId=op.op_id, activity=activity)

    def _stream(self, op: Operation) -> None:
        if not self._is_live(op):
            return
        self._activity(op, "model_delta")
        op.events.delta("…", ms(self.now()))
        self._later(op, self.knobs.activity_interval_s, lambda: self._stream(op))

    def _model_answered(self, op: Operation) -> None:
        if not self._is_live(op):
            return
        op.cancel_timers()
        assert op.plan is not None
        now = ms(self.now())
        if self.profile.history_on_completion:
            self._record_user_message(op.message)
        if op.plan.fail:
            self._set_result(op, "failed", "run_failed")
            op.events.failed("model request failed", ms(op.started_at), now)
            self._finish_turn(op, "failed", "error")
        else:
            self._set_result(op, "completed", None)
            op.events.completed(op.plan.reply, ms(op.started_at), now)
            self._finish_turn(op, "done", "ok", reply=op.plan.reply)
        if self.rng.random() < self.knobs.leak_after_complete_rate:
            return  # seed 1: the owner never reaches its clear step
        if (
            self.profile.drain_races_clear
            and op.result == "completed"
            and not self._waiters.get(op.session_key)
        ):
            self._drain_race[op.session_key] = op.op_id
        self._owner_settled(op)

    def _finish_turn(self, op: Operation, status: str, chat: str, *, reply: str = "") -> None:
        session = self._session(op.session_key)
        session.ended_at = self.now()
        if reply:
            self._record_assistant(op.session_key, reply)
        self._set_status(op.session_key, status)
        self._finish_chat_run(op.run_id, chat)

    def _set_result(self, op: Operation, kind: str, code: str | None) -> None:
        op.result, op.code, op.ended_at = kind, code, self.now()
        self._set_phase(op, kind)
        self._change(
            "ended",
            sessionKey=op.session_key,
            runId=op.op_id,
            result=kind,
            optional={"code": code},
        )
        if self.profile.self_heals:
            self._later(op, self.knobs.terminal_settle_s, lambda: self._forced_settle(op))

    # --- aborts and clears -----------------------------------------------------

    def abort(self, session_key: str, run_id: str | None = None) -> list[str]:
        """``chat.abort``: abort the waiting messages, then the owner. Returns aborted run ids."""
        aborted = []
        for waiter in list(self._waiters.get(session_key, [])):
            if run_id in (None, waiter.message.run_id) and self._remove_waiter(waiter):
                self._resolve_waiter(waiter, "aborted")
                self._skip(waiter.message, "aborted", waiter.blocking_run_id)
                aborted.append(waiter.message.run_id)
        op = self._ops.get(session_key)
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
        self._set_result(op, "aborted", "aborted_by_user")
        op.events.aborted(ms(op.started_at), ms(self.now()))
        self._finish_chat_run(op.run_id, "ok")
        if was_queued:
            self._clear(op, "normal")
            return True
        self._set_status(op.session_key, "killed")
        # A backend that ignores the cancel (WEDGE) never hands control back, so the
        # owner never completes: the entry stays, terminal but held (2026.5.x: for good,
        # seed 1; 2026.9: until the forced settle).
        owner_resumes = not (op.plan is not None and op.plan.ignores_cancel)
        if owner_resumes:
            self._later(op, self.knobs.cancel_settle_s, lambda: self._owner_settled(op))
        return True

    def _owner_settled(self, op: Operation) -> None:
        """The owner's ``finally`` ran: it completes and clears the entry, then (2026.5.28)
        drains the session's follow-up queue with an operation of its own."""
        if self._clear(op, "normal") is None:
            return
        if self.profile.empty_drain_operation and op.message.turn_kind == "visible":
            self._empty_drain(op.session_key)

    def _empty_drain(self, session_key: str) -> None:
        """2026.5.28: the follow-up drain takes the lock for an operation with nothing to
        do, which completes at once (seen after every visible turn)."""
        if session_key in self._ops:
            return  # a woken waiter took the lock first
        session = self._session(session_key)
        drain_id = f"drain-{uuid.uuid4()}"
        message = Message(drain_id, session_key, "", "queued_followup")
        events = RunEvents(
            self._event,
            run_id=drain_id,
            session_key=session_key,
            session_id=session.session_id,
            agent_id=session.agent_id or "main",
        )
        now = self.now()
        op = Operation(
            message, session.session_id, now, now, events, op_id=self._next_op_id(drain_id)
        )
        self._ops[session_key] = op
        self._change(
            "acquired",
            sessionKey=session_key,
            runId=op.op_id,
            sessionId=op.session_id,
            phase=op.phase,
            turnKind=message.turn_kind,
        )
        op.result, op.ended_at = "completed", now
        self._change("ended", sessionKey=session_key, runId=op.op_id, result="completed")
        self._clear(op, "normal")

    def force_clear(self, session_key: str, expect_run_id: str, reason: str) -> dict[str, Any]:
        """Compare-and-clear (docs/protocol.md §2): only if ``expect_run_id`` still owns the key."""
        op = self._ops.get(session_key)
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
                "current": self._entry(op),
            }
        op.cancel_timers()
        if op.result is None:
            # As the companion plugin does: abortByUser() first (cancels the backend),
            # then the registry's own clear path.
            self._set_result(op, "aborted", "aborted_by_user")
            op.cancel_timers()  # no forced settle: the entry is cleared now
            op.events.aborted(ms(op.started_at), ms(self.now()))
            self._finish_turn(op, "killed", "ok")
            if self.profile.clear_leaves_reply:
                self._record_assistant(op.session_key, CLEARED_REPLY)
        self._log(
            "warn",
            f"reply run force cleared sessionKey={session_key} runId={op.op_id} reason={reason}",
        )
        seq = self._clear(op, "force_clear", reason)
        return {
            "cleared": True,
            "sessionKey": session_key,
            "runId": op.op_id,
            "phase": op.phase,
            "seq": seq,
        }

    def _clear(self, op: Operation, how: str, detail: str = "") -> int | None:
        """The registry's own clear path: drop the entry, then wake its waiters."""
        if self._ops.get(op.session_key) is not op:
            return None
        del self._ops[op.session_key]
        op.cancel_timers()
        seq = self._change(
            "released",
            sessionKey=op.session_key,
            runId=op.op_id,
            how=how,
            optional={"detail": detail or None},
        )
        self._wake_waiters(op.session_key)
        return seq

    # --- 2026.9 self-healing ------------------------------------------------------

    def _stale_after_s(self, op: Operation) -> float:
        if op.in_tool_call:
            return self.knobs.stale_takeover_tool_s
        return self.knobs.stale_takeover_s

    def _time_to_stale(self, op: Operation) -> float:
        now = self.now()
        if op.result is not None and op.ended_at is not None:
            return op.ended_at + self.knobs.terminal_settle_s - now
        return op.last_activity_at + self._stale_after_s(op) - now

    def _expire_if_stale(self, op: Operation) -> bool:
        if self._time_to_stale(op) > 0:
            return False
        if op.result is not None:
            self._forced_settle(op)
        else:
            self._stale_takeover(op)
        return True

    def _forced_settle(self, op: Operation) -> None:
        if self._ops.get(op.session_key) is not op or op.ended_at is None:
            return
        now = self.now()
        self._log(
            "warn",
            f"reply run terminal settle: forced release sessionKey={op.session_key} "
            f"phase={op.phase} result={op.result} ageMs={ms(now - op.started_at)} "
            f"ranForMs={ms(op.ended_at - op.started_at)}",
        )
        self._clear(op, "forced_settle", "terminal_settle")

    def _stale_takeover(self, op: Operation, reason: str = "no_activity") -> None:
        op.cancel_timers()  # backend.cancel("superseded")
        self._set_result(op, "failed", "run_stalled")
        op.events.failed("Reply operation expired as stale", ms(op.started_at), ms(self.now()))
        self._finish_turn(op, "failed", "error")
        self._log(
            "warn",
            f"reply run stale takeover: forced release sessionKey={op.session_key} reason={reason}",
        )
        self._clear(op, "stale_takeover", reason)

    # --- the session store ---------------------------------------------------------

    def _session(self, key: str) -> SessionRecord:
        session = self._sessions.get(key)
        if session is None:
            agent_id, channel = parse_session_key(key)
            session = SessionRecord(key, str(uuid.uuid4()), agent_id, channel, self.now())
            self._sessions[key] = session
        return session

    def _set_status(self, key: str, status: str) -> None:
        session = self._session(key)
        session.updated_at = self.now()
        if session.status == status:
            return
        session.status = status
        if self.reports_store:
            self._change(
                "session.status", sessionKey=key, status=status, sessionId=session.session_id
            )
        self._event(
            "sessions.changed",
            {"sessionKey": key, "reason": "status", "status": status, "ts": ms(self.now())},
        )

    def _record_assistant(self, key: str, text: str) -> None:
        self._session(key).history.append(
            {
                "role": "assistant",
                "content": [{"type": "text", "text": text}],
                "timestamp": ms(self.now()),
            }
        )

    def _record_user_message(self, message: Message) -> None:
        self._session(message.session_key).history.append(
            {
                "role": "user",
                "content": message.text,
                "timestamp": ms(self.now()),
                "idempotencyKey": f"{message.run_id}:user",
            }
        )

    # --- read side ---------------------------------------------------------------

    def entry(self, session_key: str) -> Operation | None:
        return self._ops.get(session_key)

    def waiters(self, session_key: str) -> list[Waiter]:
        return list(self._waiters.get(session_key, []))

    def session(self, session_key: str) -> SessionRecord | None:
        return self._sessions.get(session_key)

    def active_run_ids(self, session_key: str) -> list[str]:
        """Chat runs still executing or waiting (``sessions.list`` ``activeRunIds``).

        A held entry with a terminal result is not active: that is the leak
        the seeds describe, invisible here. Waiting messages are left out, as on
        both real releases, unless ``waiters_in_active_run_ids``."""
        run_ids = []
        if self.waiters_in_active_run_ids:
            run_ids = [w.message.run_id for w in self._waiters.get(session_key, [])]
        op = self._ops.get(session_key)
        if op is not None and op.result is None and op.message.run_id in self._runs:
            run_ids.append(op.run_id)
        return run_ids

    def _entry(self, op: Operation) -> dict[str, Any]:
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
            "waiters": [self._waiter_entry(w) for w in self._waiters.get(op.session_key, [])],
        }

    def _waiter_entry(self, waiter: Waiter) -> dict[str, Any]:
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
            "entries": [self._entry(op) for op in self._ops.values()],
            "sessions": (
                {k: s.status for k, s in self._sessions.items() if s.status}
                if self.reports_store
                else {}
            ),
        }

    def session_rows(self) -> list[dict[str, Any]]:
        rows = []
        for session in sorted(self._sessions.values(), key=lambda s: -s.updated_at):
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
