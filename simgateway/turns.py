"""One operation's turn: its phases, the model's answer, its terminal result."""

from __future__ import annotations

from simgateway.records import Operation, ms
from simgateway.registry_base import RegistryBase


class Turns(RegistryBase):
    """Drives an owned operation from ``queued`` to its result."""

    def _is_live(self, op: Operation) -> bool:
        return self.ops.get(op.session_key) is op and op.result is None

    def prepare(self, op: Operation) -> None:
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
            self.later(op, self.knobs.phase_step_s, lambda: self._step_phases(op, steps[1:]))
        else:
            self._start_model(op)

    def _set_phase(self, op: Operation, phase: str) -> None:
        op.phase = phase
        op.last_activity_at = self.now()
        self.change("phase", sessionKey=op.session_key, runId=op.op_id, phase=phase)

    def _start_model(self, op: Operation) -> None:
        knobs = self.knobs
        assert op.plan is not None
        plan = op.plan
        now = self.now()
        session = self.session_record(op.session_key)
        session.started_at = now
        self.set_status(op.session_key, "running")
        op.events.started(ms(now))
        if plan.tool_call:
            op.in_tool_call = True
            self._activity(op, "tool_call")
            op.events.tool_call(ms(now))
        if plan.streams:
            self.later(op, knobs.activity_interval_s, lambda: self._stream(op))
        if plan.duration_s is not None:
            self.later(op, plan.duration_s, lambda: self._model_answered(op))

    def _activity(self, op: Operation, activity: str) -> None:
        op.last_activity_at = self.now()
        self.change("activity", sessionKey=op.session_key, runId=op.op_id, activity=activity)

    def _stream(self, op: Operation) -> None:
        if not self._is_live(op):
            return
        self._activity(op, "model_delta")
        op.events.delta("…", ms(self.now()))
        self.later(op, self.knobs.activity_interval_s, lambda: self._stream(op))

    def _model_answered(self, op: Operation) -> None:
        if not self._is_live(op):
            return
        op.cancel_timers()
        assert op.plan is not None
        now = ms(self.now())
        if self.profile.history_on_completion:
            self.record_user_message(op.message)
        if op.plan.fail:
            self.set_result(op, "failed", "run_failed")
            op.events.failed("model request failed", ms(op.started_at), now)
            self.finish_turn(op, "failed", "error")
        else:
            self.set_result(op, "completed", None)
            op.events.completed(op.plan.reply, ms(op.started_at), now)
            self.finish_turn(op, "done", "ok", reply=op.plan.reply)
        if self.rng.random() < self.knobs.leak_after_complete_rate:
            return  # seed 1: the owner never reaches its clear step
        if (
            self.profile.drain_races_clear
            and op.result == "completed"
            and not self.waiting.get(op.session_key)
        ):
            self.drain_race[op.session_key] = op.op_id
        self.owner_settled(op)

    def finish_turn(self, op: Operation, status: str, chat: str, *, reply: str = "") -> None:
        session = self.session_record(op.session_key)
        session.ended_at = self.now()
        if reply:
            self.record_assistant(op.session_key, reply)
        self.set_status(op.session_key, status)
        self.finish_chat_run(op.run_id, chat)

    def set_result(self, op: Operation, kind: str, code: str | None) -> None:
        op.result, op.code, op.ended_at = kind, code, self.now()
        self._set_phase(op, kind)
        self.change(
            "ended",
            sessionKey=op.session_key,
            runId=op.op_id,
            result=kind,
            optional={"code": code},
        )
        if self.profile.self_heals:
            self.later(op, self.knobs.terminal_settle_s, lambda: self.forced_settle(op))
