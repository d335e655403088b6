"""Ingest: the one writer of mirrored registry state.

The bridge hands batches of normalized events (``gateway_bridge.events``) to
``Ingestor.apply``. Each call is one transaction that

1. *sequences* the events per gateway against the stored cursor
   ``(boot_id, last_seq)``: duplicates are dropped, events that arrive ahead of
   a missing one are held in memory until the gap fills, a new ``boot_id``
   means the gateway restarted, a ``Snapshot`` jumps the cursor;
2. loads the sessions, runs and open waiters those events touch, once;
3. applies the events, in order, to plain in-memory objects;
4. writes the result back with a handful of ``executemany`` statements;
5. re-runs the flag rules (``adminpanel.detect``) on the touched sessions.

Rules worth knowing when reading the store:

- A snapshot at or below the cursor of the same boot is stale and ignored; a
  newer one releases (``release_how="reconciled"``) every lock it does not list
  and clears their waiters.
- A new boot closes every run the old one held (``release_how="restart"``) and
  clears its waiters; late events from a past boot are ignored.
- Rows ingest inferred itself (``run_lost_at_restart``, ``lock_reconciled``)
  sit on the timeline with ``seq`` NULL: the gateway never numbered them.
- A flag that is still true keeps its row and its ``since``; its severity, why
  and details are refreshed when severity or details change.

Why not the ORM per event: at a few hundred events per second per gateway,
one query per event would make the store the bottleneck and hold SQLite's
write lock for the whole batch. Loading once and writing once keeps a batch
of 2,000 events to about a dozen statements. The SQL is plain
``INSERT``/``UPDATE`` with ``%s`` parameters, so it runs unchanged on SQLite
and PostgreSQL.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog
from django.conf import settings
from django.db import connection, transaction

from adminpanel import detect
from adminpanel.ingest.applier import _Applier
from adminpanel.ingest.batch import _Batch
from adminpanel.ingest.flags import _FlagWriter
from adminpanel.ingest.rows import _GatewayRow
from adminpanel.ingest.sequencer import HELD_CAP_FACTOR, _Held, _Sequencer
from adminpanel.ingest.sql import _aware, _Tables
from adminpanel.models import DispatchSkip, Gateway
from adminpanel.observability.counters import record_batch
from gateway_bridge.events import RegistryEvent, Snapshot

__all__ = ["IngestResult", "Ingestor"]

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class IngestResult:
    applied: int = 0
    duplicates: int = 0
    held: int = 0
    needs_snapshot: bool = False
    changed_sessions: set[tuple[str, str]] = field(default_factory=set)


class Ingestor:
    """One per bridge process: applies registry events; keeps reorder buffers in memory."""

    def __init__(
        self,
        *,
        reorder_window: int | None = None,
        reorder_wait_s: float | None = None,
        thresholds: detect.Thresholds | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.reorder_window = (
            settings.RUNBOARD_REORDER_WINDOW if reorder_window is None else reorder_window
        )
        self.reorder_wait_s = (
            settings.RUNBOARD_REORDER_WAIT_S if reorder_wait_s is None else reorder_wait_s
        )
        self.thresholds = thresholds or detect.Thresholds.from_settings()
        self.clock = clock
        self._held: dict[str, dict[tuple[str, int], _Held]] = {}
        self._tables: _Tables | None = None

    @property
    def tables(self) -> _Tables:
        if self._tables is None:
            self._tables = _Tables()
        return self._tables

    # apply -------------------------------------------------------------------------

    def apply(self, events: Sequence[RegistryEvent]) -> IngestResult:
        """Apply a batch in one transaction. See the module docstring for the semantics."""
        now = self.clock()
        result = IngestResult()
        by_gateway: dict[str, list[RegistryEvent]] = defaultdict(list)
        for ev in events:
            by_gateway[ev.gateway].append(ev)
        names = set(by_gateway) | {g for g, held in self._held.items() if held}
        new_held: dict[str, dict[tuple[str, int], _Held]] = {}
        with transaction.atomic():
            for name in sorted(names):
                seq = self._apply_gateway(name, by_gateway.get(name, []), now, result)
                new_held[name] = seq.held
                result.needs_snapshot |= seq.needs_snapshot(
                    now, self.reorder_window, self.reorder_wait_s
                )
        # Only after commit: a rolled-back batch leaves the buffers as they were.
        self._held.update(new_held)
        result.held = sum(len(h) for h in self._held.values())
        if result.needs_snapshot:
            log.warning("reorder_gap_needs_snapshot", held=result.held)
        return result

    def _apply_gateway(
        self, name: str, events: list[RegistryEvent], now: float, result: IngestResult
    ) -> _Sequencer:
        gw = self._load_gateway(name)
        seq = _Sequencer(
            gw.boot_id, gw.last_seq, list(gw.past_boots), dict(self._held.get(name, {}))
        )
        for ev in events:
            seq.offer(ev, now)
        seq.trim(self.reorder_window * HELD_CAP_FACTOR)
        result.duplicates += seq.duplicates
        if not seq.ready:
            return seq
        changed = self._write_events(gw, seq, now)
        record_batch(name, seq.ready, self.clock())
        result.applied += len(seq.ready)
        result.changed_sessions.update((name, key) for key in changed)
        gw.boot_id, gw.last_seq, gw.past_boots = seq.boot_id, seq.last_seq, seq.past_boots
        self.tables.gateway_cursor.update(
            [(gw.pk, [gw.boot_id, gw.last_seq, gw.past_boots, gw.version, gw.profile])]
        )
        return seq

    def _load_gateway(self, name: str) -> _GatewayRow:
        """The gateway's row and ingest's cursor; plain SQL, as it runs once per batch."""
        found = self.tables.gateway_read.select("name = %s", [name])
        if not found:
            Gateway.objects.get_or_create(name=name)
            found = self.tables.gateway_read.select("name = %s", [name])
        pk, name, boot_id, last_seq, past, version, profile = found[0]
        return _GatewayRow(pk, name, boot_id, last_seq, list(past or []), version, profile)

    def _write_events(self, gw: _GatewayRow, seq: _Sequencer, now: float) -> set[str]:
        batch = _Batch(self.tables)
        whole = bool(seq.boots_started) or any(isinstance(e, Snapshot) for e in seq.ready)
        batch.load(gw, seq.ready, whole)
        applier = _Applier(batch, gw)
        current_boot = gw.boot_id
        for ev in seq.ready:
            if ev.boot_id != current_boot:
                if current_boot:  # the very first boot we see has nothing to close
                    applier.close_boot(current_boot, ev.boot_id, ev.at)
                current_boot = ev.boot_id
            applier.apply(ev)
        batch.write()
        touched = [batch.by_pk[pk] for pk in batch.dirty_sessions]
        flagged = _FlagWriter(self.tables, self.thresholds).evaluate(touched, batch.waiters, now)
        return {s.key for s in touched} | {batch.by_pk[pk].key for pk in flagged}

    # tick ------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> set[tuple[str, str]]:
        """Re-run the rules on every session that could carry a flag; a few queries in all."""
        now = self.clock() if now is None else now
        skip_w, alt_w = detect.windows(self.thresholds)
        skips = connection.ops.quote_name(DispatchSkip._meta.db_table)
        where = (
            "locked = %s OR waiter_count > 0 OR flag_count > 0 "
            f"OR id IN (SELECT session_id FROM {skips} WHERE at >= %s)"
        )
        with transaction.atomic():
            batch = _Batch(self.tables)
            batch._add_sessions(where, [True, self.tables.dt(now - max(skip_w, alt_w))])
            if not batch.by_pk:
                return set()
            batch._load_waiters(list(batch.by_pk))
            sessions = list(batch.by_pk.values())
            changed = _FlagWriter(self.tables, self.thresholds).evaluate(
                sessions, batch.waiters, now
            )
        if not changed:
            return set()
        names = dict(Gateway.objects.values_list("id", "name"))
        return {(names[batch.by_pk[pk].gateway_pk], batch.by_pk[pk].key) for pk in changed}

    # connection state ----------------------------------------------------------------

    def record_connection(self, gateway: str, state: object) -> None:
        """Mirror the bridge's ConnectionState onto the Gateway row (created if missing).

        The boot id the bridge saw is not copied: ``Gateway.boot_id`` is ingest's
        cursor and only moves when that boot's events are applied.
        """
        Gateway.objects.get_or_create(name=gateway)
        Gateway.objects.filter(name=gateway).update(
            status=getattr(state, "status", "disconnected"),
            mode=getattr(state, "mode", "unknown"),
            version=getattr(state, "version", "") or "",
            last_event_at=_aware(getattr(state, "last_event_at", None)),
            last_error=getattr(state, "last_error", "") or "",
            reconnects=getattr(state, "reconnects", 0) or 0,
            connected_since=_aware(getattr(state, "connected_since", None)),
        )

    def gaps_overdue(self, now: float | None = None) -> set[str]:
        """Gateways whose held events waited past the reorder window or wait."""
        now = self.clock() if now is None else now
        overdue = set()
        for name, held in self._held.items():
            seq = _Sequencer("", 0, [], held)
            if seq.needs_snapshot(now, self.reorder_window, self.reorder_wait_s):
                overdue.add(name)
        return overdue
