"""The registry observer mode infers: locks, waiters and dropped messages per session.

The gateway numbers none of this, so the events are numbered here, under a boot
id of the bridge's choosing. The rules that read the gateway's frames are in
``translator``; the rules for a lock's lifecycle, for waiters and for deciding
what a run that never ran was are here.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from gateway_bridge.events import (
    SESSION_STATUSES,
    DispatchSkipped,
    LockAcquired,
    LockReleased,
    PhaseChanged,
    RegistryEvent,
    RunActivity,
    RunEnded,
    Snapshot,
    SnapshotEntry,
    SnapshotWaiter,
    WaiterAdded,
    WaiterResolved,
)
from gateway_bridge.gateway_log import SessionDiagnostic

FINISHED_RUNS_KEPT = 10_000
RELEASES_KEPT = 10_000
# The reply a follow-up drain failure gets (agent-runner.ts); the log line says the rest.
DRAIN_FAILED_REPLY = "Previous run is still shutting down"


def ms(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return value / 1000.0
    return None


def text_of(value: object) -> str:
    return value if isinstance(value, str) else ""


@dataclass(slots=True)
class WaiterState:
    run_id: str
    since: float
    blocking_run_id: str


@dataclass(slots=True)
class LockState:
    """What the observer believes the registry entry for a key is."""

    run_id: str
    acquired_at: float
    phase: str = "queued"
    session_id: str = ""
    turn_kind: str = "visible"
    last_activity_at: float = 0.0
    result: str = ""
    code: str = ""
    # The run showed events of its own (it executes, it is not only an id in a list).
    started: bool = False
    # Synthesized from sessions.list (hasActiveRun + startedAt) without a run id.
    synthetic: bool = False


@dataclass(slots=True)
class SessionState:
    key: str
    session_id: str = ""
    status: str = ""
    lock: LockState | None = None
    waiters: dict[str, WaiterState] = field(default_factory=dict)
    # The run that held the lock last, for log lines that name only the key.
    last_run_id: str = ""
    last_result: str = ""
    last_ended_at: float = 0.0
    # The gateway time of the newest row applied (a sessions.list answer or sessions.changed).
    row_at: float = 0.0


@dataclass(slots=True)
class Drop:
    """A run that ended without having run: a skipped message, reason not yet known."""

    session_key: str
    run_id: str
    blocking_run_id: str
    at: float
    received_at: float
    # Looked at once without a verdict: wait for a log line until unconfirmed_drop_s.
    checked: bool = False


class InferredRegistry:
    """The registry as observer mode believes it is, and the events that change it.

    The translator (its subclass) reads the gateway's frames; this part keeps
    the locks, waiters and dropped messages, numbers the events it emits, and
    answers for the whole picture (``snapshot``) or one key (``owner_of``).
    """

    def __init__(
        self,
        *,
        gateway: str,
        boot_id: str,
        version: str = "",
        waiter_timeout_ms: int | None = None,
        activity_interval_s: float = 1.0,
        drop_settle_s: float = 1.0,
        unconfirmed_drop_s: float = 10.0,
        dedupe_window_s: float = 60.0,
    ) -> None:
        self.gateway = gateway
        self.boot_id = boot_id
        self.version = version
        self.waiter_timeout_ms = waiter_timeout_ms
        self.activity_interval_s = activity_interval_s
        self.drop_settle_s = drop_settle_s
        self.unconfirmed_drop_s = max(unconfirmed_drop_s, drop_settle_s)
        self.dedupe_window_s = dedupe_window_s
        self.seq = 0
        self.snapshots = 0
        # A terminal event or an unknown run: sessions.list should be read soon.
        self.wants_poll = False
        # sessions.changed carries whole rows with hasActiveRun (real 2026.9): polls can be rarer.
        self.rows_from_events = False
        self.diagnostics: list[SessionDiagnostic] = []
        self.by_key: dict[str, SessionState] = {}
        self.finished: OrderedDict[str, str] = OrderedDict()  # run id -> result
        self.released: OrderedDict[str, str] = OrderedDict()  # run id -> how
        self.activity_at: dict[str, float] = {}
        self.drops: list[Drop] = []
        self._waiter_ids: OrderedDict[str, str] = OrderedDict()  # announced, not yet resolved
        self._forced: OrderedDict[str, str] = OrderedDict()  # run id -> force-clear detail
        # Skips already reported per key, (reason, at, source), to report each once.
        self._reported_skips: dict[str, list[tuple[str, float, str]]] = {}
        self.out: list[RegistryEvent] = []
        self.received_at = 0.0

    # --- reading ---------------------------------------------------------------

    def owner_of(self, session_key: str) -> SnapshotEntry | None:
        """The entry the observer believes holds ``session_key``'s lock, if any."""
        s = self.by_key.get(session_key)
        if s is None or s.lock is None:
            return None
        return self.entry(s, s.lock)

    def note_force_clear(self, run_id: str, detail: str) -> None:
        """Runboard aborted ``run_id`` to force-clear it: its lock's release is that."""
        self.remember(self._forced, run_id, detail, RELEASES_KEPT)
        self.wants_poll = True

    @property
    def next_settle_at(self) -> float | None:
        """When ``settle`` has work (a dropped run whose reason is pending)."""
        return min((self.next_check(d) for d in self.drops), default=None)

    # --- whole state: the snapshot ----------------------------------------------

    def snapshot(self, at: float, received_at: float) -> Snapshot:
        """The current picture as a ``Snapshot``, numbered after every event so far."""
        if self.snapshots or self.seq:
            self.seq += 1  # the store ignores a snapshot at or below its cursor
        self.snapshots += 1
        entries = tuple(self.entry(s, s.lock) for s in self.by_key.values() if s.lock)
        statuses = {s.key: s.status for s in self.by_key.values() if s.status in SESSION_STATUSES}
        return Snapshot(
            gateway=self.gateway,
            boot_id=self.boot_id,
            seq=self.seq,
            at=at,
            received_at=received_at,
            entries=entries,
            session_statuses=statuses,
            version=self.version,
        )

    def entry(self, s: SessionState, lock: LockState) -> SnapshotEntry:
        waiters = tuple(
            SnapshotWaiter(
                waiter_id=w.run_id,
                since=w.since,
                timeout_ms=self.waiter_timeout_ms,
                message_id=w.run_id,
            )
            for w in s.waiters.values()
        )
        return SnapshotEntry(
            session_key=s.key,
            run_id=lock.run_id,
            session_id=lock.session_id or s.session_id,
            phase=lock.phase,
            result=lock.result,
            code=lock.code,
            started_at=lock.acquired_at,
            last_activity_at=lock.last_activity_at or lock.acquired_at,
            turn_kind=lock.turn_kind,
            waiters=waiters,
        )

    # --- deciding what a run that never ran was -------------------------------------

    def settle(self, now: float) -> list[RegistryEvent]:
        """Decide what each run that ended without running was, once the evidence is in.

        An abort of the run it waited behind (seen within ``drop_settle_s``)
        or a log line naming the skip makes it a ``DispatchSkipped``. Without
        either, after ``unconfirmed_drop_s``, it is taken as merged into the
        active run (OpenClaw steers a message into a busy run and ends the
        message's own run with an empty final): no skip.
        """
        self.begin(now)
        for drop in [d for d in self.drops if now >= self.next_check(d)]:
            reason = self.drop_reason(drop)
            if not reason and now - drop.received_at < self.unconfirmed_drop_s:
                drop.checked = True
                continue
            self.settle_drop(drop, reason)
        return self.take()

    def next_check(self, drop: Drop) -> float:
        wait = self.unconfirmed_drop_s if drop.checked else self.drop_settle_s
        return drop.received_at + wait

    def settle_drop(self, drop: Drop, reason: str) -> None:
        self.drops.remove(drop)
        s = self.session(drop.session_key)
        if not reason:
            self.resolve_waiter_event(s, drop.run_id, drop.at, "admitted")
            return
        outcome = "aborted" if reason == "aborted" else "timed_out"
        self.resolve_waiter_event(s, drop.run_id, drop.at, outcome)
        self.skip(drop.session_key, reason, drop.at, "run", drop.blocking_run_id, drop.run_id)

    def chat_final(self, key: str, run_id: str, at: float, message: object) -> None:
        s = self.session(key)
        if s.lock is not None and s.lock.run_id == run_id and s.lock.started:
            self.ended(key, run_id, at, "completed", "")
            return
        if run_id in self.finished:
            return
        if run_id in self.released:
            self.late_end(key, run_id, at, "completed", "")
            return
        # A final for a run that never ran: its message was dropped, or (with the
        # drain-failure reply) the follow-up drain failed, which the log line reports.
        reply = json.dumps(message) if message is not None else ""
        self.remember_finished(run_id, "skipped")
        if run_id in s.waiters:
            waiter = s.waiters.pop(run_id)
            blocking = waiter.blocking_run_id
        elif s.lock is not None and s.lock.run_id == run_id:
            self.release(s, at, "normal", "the run ended without having run")
            blocking = s.last_run_id if s.last_run_id != run_id else ""
        else:
            blocking = s.lock.run_id if s.lock else s.last_run_id
        if DRAIN_FAILED_REPLY in reply:
            self.resolve_waiter_event(s, run_id, at, "admitted")
            return
        self.drops.append(Drop(key, run_id, blocking, at, self.received_at))

    # --- the lock's lifecycle ------------------------------------------------------

    def sign(
        self,
        key: str,
        run_id: str,
        at: float,
        phase: str | None,
        session_id: str,
        turn_kind: str,
        *,
        activity: str = "",
    ) -> None:
        """A run shows it executes: acquire, change phase or record activity."""
        if run_id in self.finished:
            return  # late events after the end (OpenClaw sends a few)
        s = self.session(key)
        s.session_id = session_id or s.session_id
        lock = s.lock
        if lock is not None and lock.run_id != run_id:
            if not lock.started and not lock.synthetic:
                # The run we took as owner never ran: it was waiting, this one holds the lock.
                waiting = lock.run_id
                self.release(s, at, "normal", f"run {run_id} holds the lock")
                self.remember_unfinished(waiting)
                self.acquire(s, run_id, at, phase or "running", session_id, turn_kind)
                self.add_waiter(s, waiting, at)
                return
            # One entry per key: if another run executes, the previous one was released.
            self.release(s, at, "normal", f"run {run_id} started")
            lock = None
        if lock is None:
            self.acquire(s, run_id, at, phase or "running", session_id, turn_kind)
            return
        lock.started = True
        lock.turn_kind = turn_kind if turn_kind == "heartbeat" else lock.turn_kind
        lock.session_id = session_id or lock.session_id
        if phase is not None and phase != lock.phase and not lock.result:
            lock.phase, lock.last_activity_at = phase, at
            self.emit(PhaseChanged, at, session_key=key, run_id=run_id, phase=phase)
        elif activity:
            last = self.activity_at.get(run_id)
            if last is None or at - last >= self.activity_interval_s:
                self.activity_at[run_id] = at
                lock.last_activity_at = at
                self.emit(RunActivity, at, session_key=key, run_id=run_id, activity=activity)

    def acquire(
        self,
        s: SessionState,
        run_id: str,
        at: float,
        phase: str,
        session_id: str = "",
        turn_kind: str = "visible",
        *,
        started: bool = True,
        synthetic: bool = False,
    ) -> None:
        if s.waiters.pop(run_id, None) is not None:
            self.resolve_waiter_event(s, run_id, at, "admitted")
        if started:
            for drop in [d for d in self.drops if d.session_key == s.key]:
                # A run the gateway starts on its own right after carries the dropped
                # message (a queued follow-up under a new run id): it was not lost.
                self.settle_drop(drop, "")
        s.lock = LockState(
            run_id=run_id,
            acquired_at=at,
            phase=phase,
            session_id=session_id or s.session_id,
            turn_kind=turn_kind,
            last_activity_at=at,
            started=started,
            synthetic=synthetic,
        )
        self.activity_at[run_id] = at
        self.emit(
            LockAcquired,
            at,
            session_key=s.key,
            run_id=run_id,
            session_id=session_id or s.session_id,
            phase=phase,
            turn_kind=turn_kind,
            message_id="" if synthetic else run_id,
        )

    def ended(
        self, key: str, run_id: str, at: float, result: str, code: str, error: str = ""
    ) -> None:
        if run_id in self.finished:
            return
        s = self.session(key)
        lock = s.lock
        if lock is not None and lock.synthetic and run_id not in s.waiters:
            # The run we knew only from sessions.list shows its id as it ends.
            self.release(s, at, "normal", f"identified as run {run_id}")
            self.acquire(s, run_id, at, "running", started=True)
            lock = s.lock
        if run_id in self.released and (lock is None or lock.run_id != run_id):
            self.late_end(key, run_id, at, result, code)
            return
        if lock is None or lock.run_id != run_id:
            if run_id in s.waiters or (lock is None and result == "aborted"):
                # An aborted message that never ran: dropped, like a final without reply.
                self.chat_final(key, run_id, at, None)
            return
        self.remember_finished(run_id, result)
        lock.result, lock.code, lock.phase = result, code, result
        self.emit(RunEnded, at, session_key=key, run_id=run_id, result=result, code=code)
        s.last_result, s.last_ended_at = result, at
        # Is the lock released? sessions.list says, unless sessions.changed rows will.
        self.wants_poll = not self.rows_from_events
        if code == "run_stalled":
            self.release(s, at, "stale_takeover", error or "no_activity")

    def late_end(self, key: str, run_id: str, at: float, result: str, code: str) -> None:
        """A run whose lock we already saw go reports its end: record the result."""
        self.remember_finished(run_id, result)
        self.emit(RunEnded, at, session_key=key, run_id=run_id, result=result, code=code)

    def release(self, s: SessionState, at: float, how: str, detail: str) -> None:
        lock = s.lock
        if lock is None:
            return
        s.lock = None
        s.last_run_id, s.last_result = lock.run_id, lock.result
        self.activity_at.pop(lock.run_id, None)
        forced = self._forced.pop(lock.run_id, None)
        if forced is not None and how == "normal":
            how, detail = "force_clear", forced
        self.remember(self.released, lock.run_id, how, RELEASES_KEPT)
        self.emit(LockReleased, at, session_key=s.key, run_id=lock.run_id, how=how, detail=detail)

    # --- waiters and drops -----------------------------------------------------------

    def add_waiter(self, s: SessionState, run_id: str, at: float) -> None:
        assert s.lock is not None
        s.waiters[run_id] = WaiterState(run_id, at, s.lock.run_id)
        self.emit(
            WaiterAdded,
            at,
            session_key=s.key,
            waiter_id=run_id,
            timeout_ms=self.waiter_timeout_ms,
            blocking_run_id=s.lock.run_id,
            message_id=run_id,
        )

    def waiter_gone(self, s: SessionState, run_id: str, at: float) -> None:
        """A waiting run left ``activeRunIds`` without running: its message was dropped."""
        waiter = s.waiters.pop(run_id)
        self.remember_finished(run_id, "skipped")
        self.drops.append(Drop(s.key, run_id, waiter.blocking_run_id, at, self.received_at))

    def resolve_waiter_event(self, s: SessionState, run_id: str, at: float, outcome: str) -> None:
        """Resolve a waiter the store was told about, once."""
        if self._waiter_ids.pop(run_id, None) is not None:
            self.emit(WaiterResolved, at, session_key=s.key, waiter_id=run_id, outcome=outcome)

    def drop_reason(self, drop: Drop) -> str:
        s = self.session(drop.session_key)
        blocking = drop.blocking_run_id
        lock = s.lock
        if lock is not None and lock.run_id == blocking and lock.result == "aborted":
            return "aborted"
        if s.last_run_id == blocking and s.last_result == "aborted":
            return "aborted"
        if self.finished.get(blocking) == "aborted":
            return "aborted"
        return ""

    def skip(
        self,
        key: str,
        reason: str,
        at: float,
        source: str,
        blocking_run_id: str = "",
        message_id: str = "",
    ) -> None:
        """Report a skip once, whether it shows as a dropped run, a log line, or both."""
        reported = self._reported_skips.setdefault(key, [])
        reported[:] = [r for r in reported if at - r[1] < self.dedupe_window_s]
        for i, (other_reason, _, other_source) in enumerate(reported):
            if other_source != source and other_reason == reason:
                del reported[i]  # this one was already reported by the other source
                return
        if source == "log":
            # A dropped run still settling is this same skip: report it with the log's reason.
            for drop in self.drops:
                if drop.session_key == key:
                    self.settle_drop(drop, reason)
                    return
        reported.append((reason, at, source))
        self.emit(
            DispatchSkipped,
            at,
            session_key=key,
            reason=reason,
            blocking_run_id=blocking_run_id,
            message_id=message_id,
        )

    def forced_release(self, key: str, at: float, how: str, detail: str) -> None:
        """The registry released a lock itself; name how, even if we saw it go already."""
        s = self.session(key)
        if s.lock is not None and s.lock.result:
            self.release(s, at, how, detail)
            return
        run_id = s.last_run_id
        if not run_id or self.released.get(run_id) == how:
            return
        # Released earlier as "normal" from sessions.list: the log line says how.
        self.remember(self.released, run_id, how, RELEASES_KEPT)
        self.emit(LockReleased, at, session_key=key, run_id=run_id, how=how, detail=detail)

    # --- bookkeeping -------------------------------------------------------------------

    def session(self, key: str) -> SessionState:
        s = self.by_key.get(key)
        if s is None:
            s = self.by_key[key] = SessionState(key)
        return s

    def begin(self, received_at: float) -> None:
        self.received_at = received_at

    def emit(self, cls: type[RegistryEvent], at: float, **fields: Any) -> None:
        self.seq += 1
        self.out.append(
            cls(
                gateway=self.gateway,
                boot_id=self.boot_id,
                seq=self.seq,
                at=at,
                received_at=self.received_at,
                **fields,
            )
        )
        if cls is WaiterAdded:
            self.remember(self._waiter_ids, fields["waiter_id"], "", FINISHED_RUNS_KEPT)

    def take(self) -> list[RegistryEvent]:
        out, self.out = self.out, []
        return out

    def remember_finished(self, run_id: str, result: str) -> None:
        self.remember(self.finished, run_id, result, FINISHED_RUNS_KEPT)

    def remember_unfinished(self, run_id: str) -> None:
        """We took a waiting run for the owner: forget that it ended or was released."""
        self.finished.pop(run_id, None)
        self.released.pop(run_id, None)

    @staticmethod
    def remember(store: OrderedDict[str, str], key: str, value: str, cap: int) -> None:
        store[key] = value
        store.move_to_end(key)
        while len(store) > cap:
            store.popitem(last=False)
