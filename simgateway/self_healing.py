"""2026.9's self-healing: a stale owner is taken over, a terminal one force-released.

Like the real code, staleness is judged when admission needs the lane (a new
message, each wait slice), not by a background reaper.
"""

from __future__ import annotations

from simgateway.records import Operation, ms
from simgateway.registry_base import RegistryBase


class SelfHealing(RegistryBase):
    """2026.9 only (``profile.self_heals``)."""

    def _stale_after_s(self, op: Operation) -> float:
        if op.in_tool_call:
            return self.knobs.stale_takeover_tool_s
        return self.knobs.stale_takeover_s

    def time_to_stale(self, op: Operation) -> float:
        now = self.now()
        if op.result is not None and op.ended_at is not None:
            return op.ended_at + self.knobs.terminal_settle_s - now
        return op.last_activity_at + self._stale_after_s(op) - now

    def expire_if_stale(self, op: Operation) -> bool:
        if self.time_to_stale(op) > 0:
            return False
        if op.result is not None:
            self.forced_settle(op)
        else:
            self._stale_takeover(op)
        return True

    def forced_settle(self, op: Operation) -> None:
        if self.ops.get(op.session_key) is not op or op.ended_at is None:
            return
        now = self.now()
        self.log_line(
            "warn",
            f"reply run terminal settle: forced release sessionKey={op.session_key} "
            f"phase={op.phase} result={op.result} ageMs={ms(now - op.started_at)} "
            f"ranForMs={ms(op.ended_at - op.started_at)}",
        )
        self.clear(op, "forced_settle", "terminal_settle")

    def _stale_takeover(self, op: Operation, reason: str = "no_activity") -> None:
        op.cancel_timers()  # backend.cancel("superseded")
        self.set_result(op, "failed", "run_stalled")
        op.events.failed("Reply operation expired as stale", ms(op.started_at), ms(self.now()))
        self.finish_turn(op, "failed", "error")
        self.log_line(
            "warn",
            f"reply run stale takeover: forced release sessionKey={op.session_key} reason={reason}",
        )
        self.clear(op, "stale_takeover", reason)
