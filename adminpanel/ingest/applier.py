"""Applying each kind of registry event to a batch, and the timeline row it leaves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

import structlog

from adminpanel.ingest.batch import Batch
from adminpanel.ingest.rows import GatewayRow, SessionRow, WaiterRow, unlock
from gateway_bridge.events import (
    TERMINAL_PHASES,
    DispatchSkipped,
    FollowupDrainFailed,
    FrameRejected,
    GatewayStarted,
    GatewayStopping,
    LockAcquired,
    LockReleased,
    PhaseChanged,
    RegistryEvent,
    RunActivity,
    RunEnded,
    SessionStatusChanged,
    Snapshot,
    SnapshotEntry,
    WaiterAdded,
    WaiterResolved,
)

# Every ingest log line carries the package's name, whichever module writes it.
log = structlog.get_logger("adminpanel.ingest")

# Event fields that are not copied into a timeline row's data (kept elsewhere).
_TIMELINE_SKIP_FIELDS = frozenset(
    {"gateway", "boot_id", "seq", "at", "received_at", "session_key", "run_id", "message_text"}
)


_DATA_FIELDS: dict[type, tuple[str, ...]] = {}


def event_data(event: RegistryEvent) -> dict[str, Any]:
    cls = type(event)
    names = _DATA_FIELDS.get(cls)
    if names is None:
        names = tuple(f.name for f in fields(cls) if f.name not in _TIMELINE_SKIP_FIELDS)
        _DATA_FIELDS[cls] = names
    return {n: getattr(event, n) for n in names}


def snapshot_data(snapshot: Snapshot) -> dict[str, Any]:
    data = {
        "entries": [
            {"session_key": e.session_key, "run_id": e.run_id, "phase": e.phase, "result": e.result}
            for e in snapshot.entries
        ],
        "sessions": len(snapshot.session_statuses),
        "version": snapshot.version,
        "profile": snapshot.profile,
    }
    if snapshot.rejected:
        data["rejected"] = list(snapshot.rejected[:20])
    return data


class Applier:
    """Applies sequenced events of one gateway to a batch's in-memory objects."""

    def __init__(self, batch: Batch, gw: GatewayRow) -> None:
        self.b = batch
        self.gw = gw
        self.dt = batch.t.dt
        self.js = batch.t.js
        self.handlers: dict[type, Callable[[Any], SessionRow | None]] = {
            LockAcquired: self.lock_acquired,
            PhaseChanged: self.phase_changed,
            RunActivity: self.run_activity,
            RunEnded: self.run_ended,
            LockReleased: self.lock_released,
            WaiterAdded: self.waiter_added,
            WaiterResolved: self.waiter_resolved,
            DispatchSkipped: self.dispatch_skipped,
            FollowupDrainFailed: self.drain_failed,
            SessionStatusChanged: self.status_changed,
            GatewayStarted: self.gateway_started,
            GatewayStopping: self.gateway_stopping,
            Snapshot: self.snapshot,
            FrameRejected: self.frame_rejected,
        }

    def apply(self, event: RegistryEvent) -> None:
        s = self.handlers[type(event)](event)
        data = snapshot_data(event) if isinstance(event, Snapshot) else event_data(event)
        self._timeline(
            event.boot_id,
            event.seq,
            event.kind,
            event.at,
            event.received_at,
            s,
            getattr(event, "run_id", ""),
            data,
        )

    def _timeline(
        self,
        boot_id: str,
        seq: int | None,
        kind: str,
        at: float,
        received_at: float,
        s: SessionRow | None,
        run_id: str,
        data: dict[str, Any],
    ) -> None:
        dt = self.dt
        self.b.timeline.append(
            [
                self.gw.pk,
                s.id if s else None,
                boot_id,
                seq,
                kind,
                dt(at),
                dt(received_at),
                run_id,
                self.js(data),
            ]
        )

    # Lock lifecycle ----------------------------------------------------------------------

    def lock_acquired(self, ev: LockAcquired) -> SessionRow:
        s = self.b.session(self.gw, ev.session_key, ev.at)
        if s.locked and s.run_id != ev.run_id:
            self._release(s, ev.at, "reconciled", ev.boot_id)
        run = self.b.run(self.gw, s, ev.run_id)
        run.session_pk, run.boot_id, run.turn_kind = s.id, ev.boot_id, ev.turn_kind
        run.gateway_session_id = ev.session_id or run.gateway_session_id
        run.message_id, run.preview = ev.message_id, ev.message_preview[:200]
        run.phase, run.started_at, run.last_activity_at = ev.phase, ev.at, ev.at
        s.locked, s.run_id, s.phase = True, ev.run_id, ev.phase
        s.result = s.result_code = ""
        s.lock_acquired_at = s.last_progress_at = ev.at
        s.ended_at = None
        s.session_id = ev.session_id or s.session_id
        return s

    def phase_changed(self, ev: PhaseChanged) -> SessionRow:
        s = self.b.session(self.gw, ev.session_key, ev.at)
        run = self.b.run(self.gw, s, ev.run_id)
        run.phase, run.last_activity_at = ev.phase, ev.at
        if s.locked and s.run_id == ev.run_id:
            s.phase, s.last_progress_at = ev.phase, ev.at
        return s

    def run_activity(self, ev: RunActivity) -> SessionRow:
        s = self.b.session(self.gw, ev.session_key, ev.at)
        self.b.run(self.gw, s, ev.run_id).last_activity_at = ev.at
        if s.locked and s.run_id == ev.run_id:
            s.last_progress_at = ev.at
        return s

    def run_ended(self, ev: RunEnded) -> SessionRow:
        s = self.b.session(self.gw, ev.session_key, ev.at)
        run = self.b.run(self.gw, s, ev.run_id)
        run.result, run.code, run.ended_at = ev.result, ev.code, ev.at
        if run.phase not in TERMINAL_PHASES:
            run.phase = ev.result
        if s.locked and s.run_id == ev.run_id:
            s.result, s.result_code, s.ended_at, s.phase = ev.result, ev.code, ev.at, run.phase
        return s

    def lock_released(self, ev: LockReleased) -> SessionRow:
        s = self.b.session(self.gw, ev.session_key, ev.at)
        run = self.b.run(self.gw, s, ev.run_id)
        run.released_at, run.release_how = ev.at, ev.how
        if s.locked and s.run_id == ev.run_id:
            unlock(s)
        return s

    def _release(self, s: SessionRow, at: float, how: str, boot_id: str) -> None:
        """Close the session's held run without a gateway event saying so."""
        run = self.b.run(self.gw, s, s.run_id)
        if run.released_at is None:
            run.released_at, run.release_how = at, how
        self._timeline(boot_id, None, f"lock_{how}", at, at, s, s.run_id, {"how": how})
        unlock(s)

    # Waiters, skips, statuses --------------------------------------------------------

    def waiter_added(self, ev: WaiterAdded) -> SessionRow:
        s = self.b.session(self.gw, ev.session_key, ev.at)
        w = WaiterRow(
            None,
            s.id,
            ev.boot_id,
            ev.waiter_id,
            ev.blocking_run_id,
            ev.timeout_ms,
            ev.at,
            ev.turn_kind,
            ev.message_id,
            ev.message_preview[:200],
            ev.message_text,
        )
        self.b.waiters[s.id][(ev.boot_id, ev.waiter_id)] = w
        self.b.dirty_waiters.append(w)
        return s

    def waiter_resolved(self, ev: WaiterResolved) -> SessionRow:
        s = self.b.session(self.gw, ev.session_key, ev.at)
        w = self.b.waiters[s.id].get((ev.boot_id, ev.waiter_id))
        if w is None or w.resolved_at is not None:
            log.warning(
                "waiter_resolution_unmatched",
                gateway=self.gw.name,
                session_key=ev.session_key,
                waiter_id=ev.waiter_id,
            )
        else:
            self.b.resolve_waiter(w, ev.at, ev.outcome)
        return s

    def dispatch_skipped(self, ev: DispatchSkipped) -> SessionRow:
        return self._ledger(ev, "skip", ev.reason, "")

    def drain_failed(self, ev: FollowupDrainFailed) -> SessionRow:
        return self._ledger(ev, "drain_failed", ev.error[:64], ev.message)

    def _ledger(
        self, ev: DispatchSkipped | FollowupDrainFailed, kind: str, reason: str, error: str
    ) -> SessionRow:
        """A message the gateway gave up on: one row of the skip ledger, kept for requeue."""
        s = self.b.session(self.gw, ev.session_key, ev.at)
        self.b.skips.append(
            (
                self.gw.pk,
                s.id,
                kind,
                reason,
                error,
                ev.at,
                ev.blocking_run_id,
                ev.message_id,
                ev.message_preview[:200],
                ev.message_text,
                ev.boot_id,
                ev.seq,
            )
        )
        return s

    def status_changed(self, ev: SessionStatusChanged) -> SessionRow:
        s = self.b.session(self.gw, ev.session_key, ev.at)
        s.store_status, s.store_status_at = ev.status, ev.at
        s.session_id = ev.session_id or s.session_id
        return s

    # Gateway lifecycle ------------------------------------------------------------------

    def gateway_started(self, ev: GatewayStarted) -> None:
        self.gw.version = ev.version or self.gw.version
        self.gw.profile = ev.profile or self.gw.profile

    def gateway_stopping(self, ev: GatewayStopping) -> None:
        return None

    def frame_rejected(self, ev: FrameRejected) -> None:
        """Only its timeline row: the gateway's rejected-frame count is the ingestor's."""
        return None

    def close_boot(self, old_boot: str, new_boot: str, at: float) -> None:
        """The gateway restarted: nothing the old process held survives it."""
        for run in list(self.b.runs.values()):
            if run.gateway_pk != self.gw.pk or run.released_at is not None:
                continue
            if run.boot_id == new_boot:
                continue
            run.released_at, run.release_how = at, "restart"
            self.b.dirty_runs[(run.gateway_pk, run.run_id)] = run
            s = self.b.by_pk[run.session_pk]
            self._timeline(
                run.boot_id or old_boot,
                None,
                "run_lost_at_restart",
                at,
                at,
                s,
                run.run_id,
                {"new_boot_id": new_boot},
            )
            if s.run_id == run.run_id:
                unlock(s)
            self.b.dirty_sessions.add(s.id)
        for s in self.b.by_pk.values():
            if s.gateway_id != self.gw.pk:
                continue
            if s.locked:  # a lock whose run row never reached the store
                unlock(s)
                self.b.dirty_sessions.add(s.id)
            for w in self.b.waiters[s.id].values():
                if w.resolved_at is None and w.boot_id != new_boot:
                    self.b.resolve_waiter(w, at, "cleared")
                    self.b.dirty_sessions.add(s.id)
        log.info(
            "gateway_restart_closed",
            gateway=self.gw.name,
            old_boot_id=old_boot,
            new_boot_id=new_boot,
        )

    def snapshot(self, ev: Snapshot) -> None:
        """Make the store equal the registry at ``ev.seq``."""
        live = {e.session_key: e for e in ev.entries}
        for s in list(self.b.by_pk.values()):
            if s.gateway_id != self.gw.pk or s.session_key in ev.unread_keys:
                continue  # an entry we could not read: the session stays as it was
            entry = live.get(s.session_key)
            if entry is None:
                self._reconcile_absent(s, ev)
            else:
                self._reconcile_entry(self.b.session(self.gw, s.session_key, ev.at), entry, ev)
        for key, status in ev.session_statuses.items():
            s = self.b.sessions[(self.gw.pk, key)]
            if s.store_status != status:
                s = self.b.session(self.gw, key, ev.at)
                s.store_status, s.store_status_at = status, ev.at
        self.gw.version = ev.version or self.gw.version
        self.gw.profile = ev.profile or self.gw.profile
        return None

    def _reconcile_absent(self, s: SessionRow, ev: Snapshot) -> None:
        open_waiters = [w for w in self.b.waiters[s.id].values() if w.resolved_at is None]
        if not s.locked and not open_waiters:
            return
        self.b.session(self.gw, s.session_key, ev.at)
        if s.locked:
            self._release(s, ev.at, "reconciled", ev.boot_id)
        for w in open_waiters:
            self.b.resolve_waiter(w, ev.at, "cleared")

    def _reconcile_entry(self, s: SessionRow, entry: SnapshotEntry, ev: Snapshot) -> None:
        if s.locked and s.run_id != entry.run_id:
            self._release(s, ev.at, "reconciled", ev.boot_id)
        same_run = s.locked and s.run_id == entry.run_id
        run = self.b.run(self.gw, s, entry.run_id)
        run.session_pk, run.boot_id = s.id, ev.boot_id
        run.turn_kind = entry.turn_kind
        run.gateway_session_id = entry.session_id or run.gateway_session_id
        run.phase, run.result, run.code = entry.phase, entry.result, entry.code
        run.started_at = entry.started_at or run.started_at or ev.at
        run.last_activity_at = entry.last_activity_at or run.last_activity_at or run.started_at
        if entry.result and run.ended_at is None:
            run.ended_at = ev.at  # the registry does not say when; no later than now
        run.released_at, run.release_how = None, ""
        s.locked, s.run_id, s.phase = True, entry.run_id, entry.phase
        s.result, s.result_code, s.ended_at = entry.result, entry.code, run.ended_at
        s.lock_acquired_at = (s.lock_acquired_at if same_run else None) or run.started_at
        s.last_progress_at = run.last_activity_at if not same_run else s.last_progress_at
        s.session_id = entry.session_id or s.session_id
        self._reconcile_waiters(s, entry, ev)

    def _reconcile_waiters(self, s: SessionRow, entry: SnapshotEntry, ev: Snapshot) -> None:
        known = self.b.waiters[s.id]
        listed = {(ev.boot_id, w.waiter_id) for w in entry.waiters}
        for key, w in known.items():
            if w.resolved_at is None and key not in listed:
                self.b.resolve_waiter(w, ev.at, "cleared")
        for sw in entry.waiters:
            if (ev.boot_id, sw.waiter_id) in known:
                continue
            w = WaiterRow(
                None,
                s.id,
                ev.boot_id,
                sw.waiter_id,
                entry.run_id,
                sw.timeout_ms,
                sw.since,
                sw.turn_kind,
                sw.message_id,
                sw.message_preview[:200],
                sw.message_text,
            )
            known[(ev.boot_id, sw.waiter_id)] = w
            self.b.dirty_waiters.append(w)
