"""``Ingestor``: sequences, loads, applies and writes one batch of registry events per call."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction

from adminpanel import detect
from adminpanel.ingest import rejects
from adminpanel.ingest.applier import Applier
from adminpanel.ingest.batch import Batch
from adminpanel.ingest.flags import FlagWriter
from adminpanel.ingest.rows import GatewayRow
from adminpanel.ingest.sequencer import HELD_CAP_FACTOR, Held, Sequencer
from adminpanel.ingest.sql import Tables, aware
from adminpanel.models import DispatchSkip, Gateway
from adminpanel.observability.counters import record_batch
from gateway_bridge.events import RegistryEvent, Snapshot

# Every ingest log line carries the package's name, whichever module writes it.
log = structlog.get_logger("adminpanel.ingest")


# At most one snapshot per gateway this often to repair what a rejected frame changed.
REJECTION_RESYNC_S = 60.0


class LeaseLost(Exception):
    """This process no longer holds the gateway's lease: another bridge writes it now."""


@dataclass(slots=True)
class IngestResult:
    applied: int = 0
    duplicates: int = 0
    held: int = 0
    needs_snapshot: bool = False
    changed_sessions: set[tuple[str, str]] = field(default_factory=set)
    # The changed sessions whose lock was taken or let go, whose run ended or whose
    # message was skipped: what an operator watches for, pushed without waiting.
    news_sessions: set[tuple[str, str]] = field(default_factory=set)


# The event kinds that are news on a session's row (adminpanel.live.broadcast).
NEWS_KINDS = frozenset(
    {"lock_acquired", "lock_released", "run_ended", "dispatch_skipped", "followup_drain_failed"}
)


class Ingestor:
    """One per bridge process: applies registry events; keeps reorder buffers in memory."""

    def __init__(
        self,
        *,
        reorder_window: int | None = None,
        reorder_wait_s: float | None = None,
        thresholds: detect.Thresholds | None = None,
        clock: Callable[[], float] = time.time,
        fence: Callable[[int], bool] | None = None,
    ) -> None:
        self.reorder_window = (
            settings.RUNBOARD_REORDER_WINDOW if reorder_window is None else reorder_window
        )
        self.reorder_wait_s = (
            settings.RUNBOARD_REORDER_WAIT_S if reorder_wait_s is None else reorder_wait_s
        )
        self.thresholds = thresholds or detect.Thresholds.from_settings()
        self.clock = clock
        # Asked inside each batch's transaction: does this process still hold the
        # gateway (its pk)? With several bridges, only the lease holder writes.
        self.fence = fence
        self._held: dict[str, dict[tuple[str, int], Held]] = {}
        self._tables: Tables | None = None
        self._resynced_at: dict[str, float] = {}

    @property
    def tables(self) -> Tables:
        if self._tables is None:
            self._tables = Tables()
        return self._tables

    # apply -------------------------------------------------------------------------

    def apply(self, events: Sequence[RegistryEvent]) -> IngestResult:
        """Apply a batch in one transaction. See the package docstring for the semantics."""
        now = self.clock()
        result = IngestResult()
        placed, loose = rejects.unplaced(rejects.screen(events))
        rejections = rejects.Rejections()
        for rejected in loose:
            rejections.note(rejected)
        by_gateway: dict[str, list[RegistryEvent]] = defaultdict(list)
        for ev in placed:
            by_gateway[ev.gateway].append(ev)
        names = set(by_gateway) | {g for g, held in self._held.items() if held}
        new_held: dict[str, dict[tuple[str, int], Held]] = {}
        with transaction.atomic():
            for name in sorted(names):
                seq = self._apply_gateway(name, by_gateway.get(name, []), now, result, rejections)
                new_held[name] = seq.held
                result.needs_snapshot |= seq.needs_snapshot(
                    now, self.reorder_window, self.reorder_wait_s
                )
            if rejections:
                rejects.record(rejections)
        # Only after commit: a rolled-back batch leaves the buffers as they were.
        self._held.update(new_held)
        result.held = sum(len(h) for h in self._held.values())
        if result.needs_snapshot:
            log.warning("reorder_gap_needs_snapshot", held=result.held)
        for name in rejections.by_gateway:
            if self._resync_allowed(name, now):
                # A rejected change may have moved a lock: a snapshot puts the store right.
                log.info("rejected_frame_resync_asked", gateway=name)
                result.needs_snapshot = True
        return result

    def _apply_gateway(
        self,
        name: str,
        events: list[RegistryEvent],
        now: float,
        result: IngestResult,
        rejections: rejects.Rejections,
    ) -> Sequencer:
        gw = self._load_gateway(name)
        if self.fence is not None and not self.fence(gw.pk):
            raise LeaseLost(name)
        seq = Sequencer(
            gw.boot_id, gw.last_seq, list(gw.past_boots), dict(self._held.get(name, {}))
        )
        for ev in events:
            seq.offer(ev, now)
        seq.trim(self.reorder_window * HELD_CAP_FACTOR)
        result.duplicates += seq.duplicates
        if not seq.ready:
            return seq
        changed = self._write_guarded(gw, seq.ready, now)
        for ev in seq.ready:
            rejections.note(ev)
        record_batch(name, seq.ready, self.clock())
        result.applied += len(seq.ready)
        result.changed_sessions.update((name, key) for key in changed)
        news = {getattr(ev, "session_key", "") for ev in seq.ready if ev.kind in NEWS_KINDS}
        result.news_sessions.update((name, key) for key in changed & news)
        gw.boot_id, gw.last_seq, gw.past_boots = seq.boot_id, seq.last_seq, seq.past_boots
        self.tables.gateway_cursor.update(
            [(gw.pk, [gw.boot_id, gw.last_seq, gw.past_boots, gw.version, gw.profile])]
        )
        return seq

    def _load_gateway(self, name: str) -> GatewayRow:
        """The gateway's row and ingest's cursor; plain SQL, as it runs once per batch."""
        found = self.tables.gateway_read.select("name = %s", [name])
        if not found:
            Gateway.objects.get_or_create(name=name)
            found = self.tables.gateway_read.select("name = %s", [name])
        pk, name, boot_id, last_seq, past, version, profile = found[0]
        return GatewayRow(pk, name, boot_id, last_seq, list(past or []), version, profile)

    def _write_guarded(self, gw: GatewayRow, ready: list[RegistryEvent], now: float) -> set[str]:
        """Write the events at once; if that fails on their data, one by one.

        A database that is down or busy is not the data's fault: that error goes
        up (the bridge holds the batch and retries). Any other failure rolls back
        to a savepoint and each event is written in its own, so one the store
        refuses becomes a ``FrameRejected`` in its place and the rest land.
        """
        boot_id, version, profile = gw.boot_id, gw.version, gw.profile
        try:
            with transaction.atomic():
                return self._write_events(gw, ready, now)
        except (OperationalError, InterfaceError, LeaseLost):
            raise
        except Exception as exc:
            log.warning("batch_write_failed", gateway=gw.name, events=len(ready),
                        error=_first_line(exc))  # fmt: skip
        gw.boot_id, gw.version, gw.profile = boot_id, version, profile
        changed: set[str] = set()
        for i, ev in enumerate(ready):
            try:
                with transaction.atomic():
                    changed |= self._write_events(gw, [ev], now)
            except (OperationalError, InterfaceError):
                raise
            except Exception as exc:
                ready[i] = rejects.as_rejected(ev, f"{ev.kind} not stored: {_first_line(exc)}")
                self._write_note(gw, ready[i], now)
            gw.boot_id = ready[i].boot_id or gw.boot_id
        return changed

    def _write_note(self, gw: GatewayRow, note: RegistryEvent, now: float) -> None:
        """A rejected event's row on the timeline, in its place; never fails the batch."""
        if not note.boot_id:
            return
        try:
            with transaction.atomic():
                self._write_events(gw, [note], now)
        except (OperationalError, InterfaceError):
            raise
        except Exception as exc:
            log.error("rejected_frame_not_noted", gateway=gw.name, seq=note.seq,
                      error=_first_line(exc))  # fmt: skip

    def _resync_allowed(self, name: str, now: float) -> bool:
        if now - self._resynced_at.get(name, float("-inf")) < REJECTION_RESYNC_S:
            return False
        self._resynced_at[name] = now
        return True

    def _write_events(self, gw: GatewayRow, ready: list[RegistryEvent], now: float) -> set[str]:
        batch = Batch(self.tables)
        whole = any(isinstance(e, Snapshot) or e.boot_id != gw.boot_id for e in ready)
        batch.load(gw, ready, whole)
        applier = Applier(batch, gw)
        current_boot = gw.boot_id
        for ev in ready:
            if ev.boot_id != current_boot:
                if current_boot:  # the very first boot we see has nothing to close
                    applier.close_boot(current_boot, ev.boot_id, ev.at)
                current_boot = ev.boot_id
            applier.apply(ev)
        batch.write()
        touched = [batch.by_pk[pk] for pk in batch.dirty_sessions]
        flagged = FlagWriter(self.tables, self.thresholds).evaluate(touched, batch.waiters, now)
        return {s.session_key for s in touched} | {batch.by_pk[pk].session_key for pk in flagged}

    # tick ------------------------------------------------------------------------

    def tick(
        self, now: float | None = None, gateways: Collection[str] | None = None
    ) -> set[tuple[str, str]]:
        """Re-run the rules on every session that could carry a flag; a few queries in all.

        ``gateways``: only theirs (the ones this bridge holds; another bridge ticks the
        rest), else every gateway's.
        """
        now = self.clock() if now is None else now
        skip_w, alt_w = detect.windows(self.thresholds)
        skips = connection.ops.quote_name(DispatchSkip._meta.db_table)
        where = (
            "(locked = %s OR waiter_count > 0 OR flag_count > 0 "
            f"OR id IN (SELECT session_id FROM {skips} WHERE at >= %s))"
        )
        params: list[Any] = [True, self.tables.dt(now - max(skip_w, alt_w))]
        with transaction.atomic():
            if gateways is not None:
                named = Gateway.objects.filter(name__in=gateways).values_list("pk", flat=True)
                # The fence, as in apply: a gateway this bridge no longer holds is not its.
                ids = [pk for pk in named if self.fence is None or self.fence(pk)]
                if not ids:
                    return set()
                where += f" AND gateway_id IN ({', '.join(['%s'] * len(ids))})"
                params += ids
            batch = Batch(self.tables)
            batch.add_sessions(where, params)
            if not batch.by_pk:
                return set()
            batch.load_waiters(list(batch.by_pk))
            sessions = list(batch.by_pk.values())
            changed = FlagWriter(self.tables, self.thresholds).evaluate(
                sessions, batch.waiters, now
            )
        if not changed:
            return set()
        names = dict(Gateway.objects.values_list("id", "name"))
        return {(names[batch.by_pk[pk].gateway_id], batch.by_pk[pk].session_key) for pk in changed}

    # connection state ----------------------------------------------------------------

    def record_connection(self, gateway: str, state: object) -> None:
        """Mirror the bridge's ConnectionState onto the Gateway row (created if missing).

        The boot id the bridge saw is not copied: ``Gateway.boot_id`` is ingest's
        cursor and only moves when that boot's events are applied.
        """
        fields = {
            "status": getattr(state, "status", "disconnected"),
            "mode": getattr(state, "mode", "unknown"),
            "version": (getattr(state, "version", "") or "")[:64],
            "last_event_at": aware(getattr(state, "last_event_at", None)),
            "last_error": getattr(state, "last_error", "") or "",
            "reconnects": getattr(state, "reconnects", 0) or 0,
            "connected_since": aware(getattr(state, "connected_since", None)),
            "granted_scopes": _scopes(getattr(state, "scopes", None)),
        }
        # One round trip when the row exists, as it does after the first time.
        if not Gateway.objects.filter(name=gateway).update(**fields):
            Gateway.objects.get_or_create(name=gateway)
            Gateway.objects.filter(name=gateway).update(**fields)

    def gaps_overdue(self, now: float | None = None) -> set[str]:
        """Gateways whose held events waited past the reorder window or wait."""
        now = self.clock() if now is None else now
        overdue = set()
        for name, held in self._held.items():
            seq = Sequencer("", 0, [], held)
            if seq.needs_snapshot(now, self.reorder_window, self.reorder_wait_s):
                overdue.add(name)
        return overdue


def _scopes(granted: object) -> list[str] | None:
    if not isinstance(granted, tuple | list):
        return None
    return [str(s)[:64] for s in granted[:20]]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"
