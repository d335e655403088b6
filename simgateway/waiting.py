"""Messages waiting for a busy session's lane: queued, timed out, sliced, woken."""

from __future__ import annotations

from simgateway.records import Message, Operation, Waiter, ms
from simgateway.registry_base import RegistryBase


class Waiting(RegistryBase):
    """Waiters: admitted again, oldest first, when the entry clears."""

    def add_waiter(self, message: Message, op: Operation) -> None:
        self.waiter_serial += 1
        waiter = Waiter(
            waiter_id=f"w-{self.waiter_serial}",
            message=message,
            since=self.now(),
            timeout_ms=self._wait_timeout_ms(message),
            blocking_run_id=op.op_id,
        )
        self.waiting.setdefault(message.session_key, []).append(waiter)
        shown = self.waiter_payload(waiter)
        self.change(
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
        delay = min(self.knobs.wait_slice_s, self.time_to_stale(op))
        waiter.timer = self.scheduler.call_later(
            max(delay, 0.001), lambda: self._slice_elapsed(waiter)
        )

    def _slice_elapsed(self, waiter: Waiter) -> None:
        """2026.9: a wait slice ended. Re-check the owner; wait another slice if it is healthy."""
        key = waiter.message.session_key
        if waiter not in self.waiting.get(key, []):
            return
        op = self.ops.get(key)
        if op is None or self.expire_if_stale(op):
            return
        self._arm_slice(waiter, op)

    def _waiter_timed_out(self, waiter: Waiter) -> None:
        if not self.remove_waiter(waiter):
            return
        self.resolve_waiter(waiter, "timed_out")
        self.skip(waiter.message, "active-run", waiter.blocking_run_id)

    def remove_waiter(self, waiter: Waiter) -> bool:
        waiters = self.waiting.get(waiter.message.session_key, [])
        if waiter not in waiters:
            return False
        waiters.remove(waiter)
        if waiter.timer is not None:
            waiter.timer.cancel()
        return True

    def resolve_waiter(self, waiter: Waiter, outcome: str) -> None:
        self.change(
            "waiter.resolved",
            sessionKey=waiter.message.session_key,
            waiterId=waiter.waiter_id,
            outcome=outcome,
        )

    def wake_waiters(self, key: str) -> None:
        """The entry was cleared: every waiter wakes and retries admission, oldest first."""
        waiters = self.waiting.pop(key, [])
        for waiter in waiters:
            if waiter.timer is not None:
                waiter.timer.cancel()
            self.resolve_waiter(waiter, "admitted")
        for waiter in waiters:
            self.admit(waiter.message)
