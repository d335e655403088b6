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

import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.db import connection, models, transaction

from adminpanel import detect
from adminpanel.models import (
    DispatchSkip,
    Flag,
    Gateway,
    Run,
    Session,
    TimelineEvent,
    Waiter,
    parse_session_key,
)
from gateway_bridge.events import (
    TERMINAL_PHASES,
    DispatchSkipped,
    FollowupDrainFailed,
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

log = structlog.get_logger(__name__)

# Past boots remembered per gateway, so a late event from one is recognised as stale.
PAST_BOOTS_KEPT = 16
# Held events kept per gateway, as a multiple of the reorder window; past it the
# oldest are dropped (a snapshot is due anyway and will cover them).
HELD_CAP_FACTOR = 4
# Turn kinds whose admission counts as a success for the alternating-error rule.
ADMISSION_TURN_KINDS = ("visible", "queued_followup")
# Event fields that are not copied into a timeline row's data (kept elsewhere).
_TIMELINE_SKIP_FIELDS = frozenset(
    {"gateway", "boot_id", "seq", "at", "received_at", "session_key", "run_id", "message_text"}
)


@dataclass(slots=True)
class IngestResult:
    applied: int = 0
    duplicates: int = 0
    held: int = 0
    needs_snapshot: bool = False
    changed_sessions: set[tuple[str, str]] = field(default_factory=set)


# --- Sequencing: pure, per gateway ------------------------------------------------


@dataclass(slots=True)
class _Held:
    event: RegistryEvent
    held_at: float


@dataclass(slots=True)
class _Sequencer:
    """Puts one gateway's events in (boot, seq) order; what comes out is applied."""

    boot_id: str
    last_seq: int
    past_boots: list[str]
    held: dict[tuple[str, int], _Held]
    ready: list[RegistryEvent] = field(default_factory=list)
    boots_started: list[tuple[str, str]] = field(default_factory=list)  # (old, new)
    duplicates: int = 0

    def offer(self, event: RegistryEvent, now: float) -> None:
        if event.boot_id in self.past_boots:
            self.duplicates += 1
        elif event.boot_id == self.boot_id:
            self._offer_same_boot(event, now)
        elif isinstance(event, Snapshot) or event.seq <= 1:
            self._take(event)
        else:
            self._hold(event, now)

    def _offer_same_boot(self, event: RegistryEvent, now: float) -> None:
        if event.seq <= self.last_seq:
            self.duplicates += 1
        elif isinstance(event, Snapshot) or event.seq == self.last_seq + 1:
            self._take(event)
        else:
            self._hold(event, now)

    def _hold(self, event: RegistryEvent, now: float) -> None:
        key = (event.boot_id, event.seq)
        if key in self.held:
            self.duplicates += 1
        else:
            self.held[key] = _Held(event, now)

    def _take(self, event: RegistryEvent) -> None:
        if event.boot_id != self.boot_id:
            self._start_boot(event.boot_id)
        self.last_seq = event.seq
        if isinstance(event, Snapshot):
            # The snapshot already contains every change up to its seq.
            stale = [k for k in self.held if k[0] == self.boot_id and k[1] <= event.seq]
            for key in stale:
                del self.held[key]
        self.ready.append(event)
        self._drain()

    def _start_boot(self, boot_id: str) -> None:
        old = self.boot_id
        if old:
            self.past_boots = [*self.past_boots, old][-PAST_BOOTS_KEPT:]
        self.boots_started.append((old, boot_id))
        self.boot_id = boot_id
        # Whatever was held for the old process will never be completed.
        for key in [k for k in self.held if k[0] == old or k[0] in self.past_boots]:
            del self.held[key]

    def _drain(self) -> None:
        nxt = self.held.pop((self.boot_id, self.last_seq + 1), None)
        while nxt is not None:
            self.last_seq += 1
            self.ready.append(nxt.event)
            nxt = self.held.pop((self.boot_id, self.last_seq + 1), None)

    def trim(self, cap: int) -> None:
        if len(self.held) > cap:
            for key in sorted(self.held)[: len(self.held) - cap]:
                del self.held[key]

    def needs_snapshot(self, now: float, window: int, wait_s: float) -> bool:
        if not self.held:
            return False
        oldest = min(h.held_at for h in self.held.values())
        return len(self.held) > window or now - oldest > wait_s


# --- In-memory working copies -------------------------------------------------------


@dataclass(slots=True)
class _Session:
    pk: int
    gateway_pk: int
    key: str
    session_id: str = ""
    store_status: str = ""
    store_status_at: float | None = None
    locked: bool = False
    run_id: str = ""
    phase: str = ""
    result: str = ""
    result_code: str = ""
    lock_acquired_at: float | None = None
    last_progress_at: float | None = None
    ended_at: float | None = None
    waiter_count: int = 0
    flag_count: int = 0
    worst_severity: str = ""
    updated_at: float | None = None

    def unlock(self) -> None:
        self.locked = False
        self.run_id = self.phase = self.result = self.result_code = ""
        self.lock_acquired_at = self.ended_at = None


@dataclass(slots=True)
class _Run:
    pk: int | None
    gateway_pk: int
    session_pk: int
    run_id: str
    boot_id: str = ""
    gateway_session_id: str = ""
    turn_kind: str = ""
    message_id: str = ""
    preview: str = ""
    phase: str = ""
    result: str = ""
    code: str = ""
    started_at: float | None = None
    last_activity_at: float | None = None
    ended_at: float | None = None
    released_at: float | None = None
    release_how: str = ""


@dataclass(slots=True)
class _Waiter:
    pk: int | None
    session_pk: int
    boot_id: str
    waiter_id: str
    blocking_run_id: str = ""
    timeout_ms: int | None = None
    since: float = 0.0
    turn_kind: str = ""
    message_id: str = ""
    preview: str = ""
    text: str = ""
    resolved_at: float | None = None
    outcome: str = ""


SESSION_LOAD = tuple(f.name for f in fields(_Session))
SESSION_WRITE = (
    "session_id",
    "store_status",
    "store_status_at",
    "locked",
    "run_id",
    "phase",
    "result",
    "result_code",
    "lock_acquired_at",
    "last_progress_at",
    "ended_at",
    "waiter_count",
    "updated_at",
)
RUN_WRITE = tuple(f.name for f in fields(_Run))[1:]
WAITER_WRITE = tuple(f.name for f in fields(_Waiter))[1:]


_EPOCH = datetime(1970, 1, 1)


def _datetime_adapter() -> Callable[[float | None], Any]:
    """Epoch seconds → what the backend stores, without a model round trip per value."""
    if connection.vendor == "sqlite":
        return _sqlite_text
    return _aware


def _datetime_reader() -> Callable[[Any], float]:
    """A stored datetime → epoch seconds (SQLite hands back its text, PostgreSQL a datetime)."""
    if connection.vendor == "sqlite":
        return _sqlite_seconds
    return lambda value: value.timestamp()


def _sqlite_seconds(value: str | datetime) -> float:
    """Naive UTC, as text or as sqlite3's own parse of it; never Django's regex parser."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return (value - _EPOCH).total_seconds()


_SECOND_TEXT: dict[int, str] = {}


def _sqlite_text(ts: float | None) -> str | None:
    """Django's SQLite datetime text (``str()`` of a naive UTC datetime), cached per second.

    Formatting a datetime costs microseconds and every event has two; events
    arrive in time order, so the whole-second part is nearly always cached.
    """
    if ts is None:
        return None
    sec = math.floor(ts)
    micro = int((ts - sec) * 1_000_000 + 0.5)
    if micro >= 1_000_000:
        sec, micro = sec + 1, 0
    prefix = _SECOND_TEXT.get(sec)
    if prefix is None:
        if len(_SECOND_TEXT) > 100_000:
            _SECOND_TEXT.clear()
        prefix = _SECOND_TEXT[sec] = str(_EPOCH + timedelta(seconds=sec))
    return prefix if micro == 0 else f"{prefix}.{micro:06d}"


def _json_adapter() -> Callable[[Any], Any]:
    if connection.vendor == "sqlite":
        return json.dumps
    return lambda value: connection.ops.adapt_json_value(value, None)


def _json_reader(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _in(column: str, values: Iterable[Any]) -> tuple[str, list[Any]]:
    """``column IN (%s, ...)``; an always-false condition for no values."""
    params = list(values)
    if not params:
        return "1 = 0", []
    return f"{column} IN ({', '.join(['%s'] * len(params))})", params


class _Table:
    """Plain INSERT/UPDATE for one model, with per-column value adapters."""

    def __init__(self, model: type[models.Model], names: Sequence[str]) -> None:
        meta = model._meta
        self.table = connection.ops.quote_name(meta.db_table)
        self.names = tuple(names)
        self.fields = [meta.get_field(n) for n in names]
        self.columns = [
            connection.ops.quote_name(str(getattr(f, "column", n)))
            for f, n in zip(self.fields, names, strict=True)
        ]
        dt, js = _datetime_adapter(), _json_adapter()
        self.adapters: list[Callable[[Any], Any] | None] = [
            dt
            if isinstance(f, models.DateTimeField)
            else js
            if isinstance(f, models.JSONField)
            else None
            for f in self.fields
        ]

        # On SQLite a bare datetime column goes through Django's regex converter on
        # fetch; an expression has no declared type, so it arrives as plain text.
        self.selected = [
            f"CAST({c} AS TEXT)"
            if connection.vendor == "sqlite" and isinstance(f, models.DateTimeField)
            else c
            for c, f in zip(self.columns, self.fields, strict=True)
        ]
        reader = _datetime_reader()
        self.readers: list[Callable[[Any], Any] | None] = [
            reader
            if isinstance(f, models.DateTimeField)
            else _json_reader
            if isinstance(f, models.JSONField)
            else bool
            if isinstance(f, models.BooleanField)
            else None
            for f in self.fields
        ]

    def select(self, where: str, params: Sequence[Any]) -> list[list[Any]]:
        """Rows as lists in ``names`` order, times as epoch seconds."""
        sql = f"SELECT {', '.join(self.selected)} FROM {self.table} WHERE {where}"
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        readers = self.readers
        return [
            [
                r(v) if r is not None and v is not None else v
                for r, v in zip(readers, row, strict=True)
            ]
            for row in rows
        ]

    def adapt(self, values: Iterable[Any]) -> list[Any]:
        return [a(v) if a is not None else v for a, v in zip(self.adapters, values, strict=True)]

    def insert(
        self, rows: Sequence[Sequence[Any]], *, adapted: bool = False, skip_existing: bool = False
    ) -> None:
        if not rows:
            return
        marks = ", ".join(["%s"] * len(self.columns))
        sql = f"INSERT INTO {self.table} ({', '.join(self.columns)}) VALUES ({marks})"
        if skip_existing:  # same syntax on SQLite >= 3.24 and PostgreSQL
            sql += " ON CONFLICT DO NOTHING"
        params = rows if adapted else [self.adapt(r) for r in rows]
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)

    def update(self, rows: Sequence[tuple[int, Sequence[Any]]]) -> None:
        """``rows``: (primary key, values in ``names`` order)."""
        if not rows:
            return
        sets = ", ".join(f"{c} = %s" for c in self.columns)
        sql = f"UPDATE {self.table} SET {sets} WHERE {connection.ops.quote_name('id')} = %s"
        with connection.cursor() as cursor:
            cursor.executemany(sql, [[*self.adapt(values), pk] for pk, values in rows])


class _Tables:
    """Built lazily once per Ingestor: the connection's vendor decides the adapters."""

    def __init__(self) -> None:
        self.session_read = _Table(Session, ("id", "gateway", "session_key", *SESSION_LOAD[3:]))
        self.run_read = _Table(Run, ("id", "gateway", "session", *RUN_WRITE[2:]))
        self.waiter_read = _Table(Waiter, ("id", "session", *WAITER_WRITE[1:]))
        self.skip_read = _Table(DispatchSkip, ("session", "kind", "at"))
        self.run_started_read = _Table(Run, ("session", "started_at"))
        self.flag_read = _Table(Flag, ("id", "session", "code", "severity", "details"))
        self.session = _Table(Session, SESSION_WRITE)
        self.session_flags = _Table(Session, ("flag_count", "worst_severity"))
        self.run = _Table(Run, ("gateway", "session", *RUN_WRITE[2:]))
        self.waiter = _Table(Waiter, ("session", *WAITER_WRITE[1:]))
        self.timeline = _Table(
            TimelineEvent,
            ("gateway", "session", "boot_id", "seq", "kind", "at", "received_at", "run_id", "data"),
        )
        self.skip = _Table(
            DispatchSkip,
            (
                "gateway",
                "session",
                "kind",
                "reason",
                "error",
                "at",
                "blocking_run_id",
                "message_id",
                "preview",
                "text",
                "boot_id",
                "seq",
            ),
        )
        self.flag = _Table(
            Flag,
            ("session", "code", "severity", "why", "since", "details", "raised_at", "cleared_at"),
        )
        self.flag_update = _Table(Flag, ("severity", "why", "details"))
        self.flag_clear = _Table(Flag, ("cleared_at",))
        self.dt = _datetime_adapter()
        self.js = _json_adapter()


_DATA_FIELDS: dict[type, tuple[str, ...]] = {}


def _event_data(event: RegistryEvent) -> dict[str, Any]:
    cls = type(event)
    names = _DATA_FIELDS.get(cls)
    if names is None:
        names = tuple(f.name for f in fields(cls) if f.name not in _TIMELINE_SKIP_FIELDS)
        _DATA_FIELDS[cls] = names
    return {n: getattr(event, n) for n in names}


def _snapshot_data(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "entries": [
            {"session_key": e.session_key, "run_id": e.run_id, "phase": e.phase, "result": e.result}
            for e in snapshot.entries
        ],
        "sessions": len(snapshot.session_statuses),
        "version": snapshot.version,
        "profile": snapshot.profile,
    }


# --- One batch ----------------------------------------------------------------------


@dataclass(slots=True)
class _GatewayRow:
    pk: int
    name: str
    boot_id: str
    last_seq: int
    past_boots: list[str]
    version: str
    profile: str


class _Batch:
    """The working set of one apply(): loaded once, mutated in memory, written once."""

    def __init__(self, tables: _Tables) -> None:
        self.t = tables
        self.sessions: dict[tuple[int, str], _Session] = {}
        self.runs: dict[tuple[int, str], _Run] = {}
        self.waiters: dict[int, dict[tuple[str, str], _Waiter]] = defaultdict(dict)
        self.dirty_sessions: set[int] = set()
        self.dirty_runs: dict[tuple[int, str], _Run] = {}
        self.dirty_waiters: list[_Waiter] = []
        self.timeline: list[list[Any]] = []
        self.skips: list[tuple[Any, ...]] = []
        self.by_pk: dict[int, _Session] = {}

    # Loading ---------------------------------------------------------------------

    def load(self, gw: _GatewayRow, events: Sequence[RegistryEvent], whole: bool) -> None:
        """Load what ``events`` touch; ``whole``: also every locked or waited-on session."""
        keys, run_ids = _keys_and_runs(events)
        self._load_sessions(gw, keys, whole)
        run_ids.update(s.run_id for s in self.by_pk.values() if s.run_id)
        self._load_runs(gw, run_ids, whole)
        self._load_waiters([s.pk for s in self.by_pk.values() if s.gateway_pk == gw.pk])

    def _load_sessions(self, gw: _GatewayRow, keys: set[str], whole: bool) -> None:
        where, params = _in("session_key", keys)
        if whole:
            where = f"({where} OR locked = %s OR waiter_count > 0)"
            params.append(True)
        self._add_sessions(f"gateway_id = %s AND {where}", [gw.pk, *params])
        missing = [k for k in keys if (gw.pk, k) not in self.sessions]
        if missing:
            # Few per batch once a gateway is known, so the ORM's defaults are worth it here.
            Session.objects.bulk_create(
                [
                    Session(gateway_id=gw.pk, session_key=k, agent=a, channel=c)
                    for k in missing
                    for a, c in [parse_session_key(k)]
                ],
                ignore_conflicts=True,
            )
            where, params = _in("session_key", missing)
            self._add_sessions(f"gateway_id = %s AND {where}", [gw.pk, *params])

    def _add_sessions(self, where: str, params: Sequence[Any]) -> None:
        for row in self.t.session_read.select(where, params):
            s = _Session(*row)
            self.sessions[(s.gateway_pk, s.key)] = s
            self.by_pk[s.pk] = s

    def _load_runs(self, gw: _GatewayRow, run_ids: set[str], whole: bool) -> None:
        where, params = _in("run_id", run_ids)
        if whole:
            where = f"({where} OR released_at IS NULL)"
        for row in self.t.run_read.select(f"gateway_id = %s AND {where}", [gw.pk, *params]):
            run = _Run(*row)
            self.runs[(run.gateway_pk, run.run_id)] = run
        orphans = {r.session_pk for r in self.runs.values()} - self.by_pk.keys()
        if orphans:  # open runs of sessions no longer shown as locked
            self._add_sessions(*_in("id", orphans))

    def _load_waiters(self, session_pks: list[int]) -> None:
        where, params = _in("session_id", session_pks)
        for row in self.t.waiter_read.select(f"{where} AND resolved_at IS NULL", params):
            w = _Waiter(*row)
            self.waiters[w.session_pk][(w.boot_id, w.waiter_id)] = w

    # Lookups used while applying -------------------------------------------------------

    def session(self, gw: _GatewayRow, key: str, at: float) -> _Session:
        s = self.sessions[(gw.pk, key)]
        self.dirty_sessions.add(s.pk)
        if s.updated_at is None or at > s.updated_at:
            s.updated_at = at
        return s

    def run(self, gw: _GatewayRow, s: _Session, run_id: str) -> _Run:
        run = self.runs.get((gw.pk, run_id))
        if run is None:
            # Seen for the first time mid-life (e.g. its acquisition fell in a gap).
            run = _Run(None, gw.pk, s.pk, run_id)
            self.runs[(gw.pk, run_id)] = run
        self.dirty_runs[(gw.pk, run_id)] = run
        return run

    def resolve_waiter(self, w: _Waiter, at: float, outcome: str) -> None:
        w.resolved_at, w.outcome = at, outcome
        self.dirty_waiters.append(w)

    # Writing -------------------------------------------------------------------------

    def write(self) -> None:
        self._write_sessions()
        self._write_runs()
        self._write_waiters()
        # Skipping existing rows keeps ingest alive if someone rewound the cursor.
        self.t.timeline.insert(self.timeline, adapted=True, skip_existing=True)
        self.t.skip.insert(self.skips)

    def _write_sessions(self) -> None:
        rows = []
        for pk in self.dirty_sessions:
            s = self.by_pk[pk]
            s.waiter_count = sum(1 for w in self.waiters[pk].values() if w.resolved_at is None)
            rows.append((pk, [getattr(s, n) for n in SESSION_WRITE]))
        self.t.session.update(rows)

    def _write_runs(self) -> None:
        new, old = [], []
        for run in self.dirty_runs.values():
            values = [getattr(run, n) for n in RUN_WRITE]
            if run.pk is None:
                new.append(values)
            else:
                old.append((run.pk, values))
        self.t.run.insert(new)
        self.t.run.update(old)

    def _write_waiters(self) -> None:
        new, old, seen = [], [], set()
        for w in self.dirty_waiters:
            if id(w) in seen:
                continue
            seen.add(id(w))
            values = [getattr(w, n) for n in WAITER_WRITE]
            if w.pk is None:
                new.append(values)
            else:
                old.append((w.pk, values))
        # A gateway that announces the same waiter twice must not fail the batch.
        self.t.waiter.insert(new, skip_existing=True)
        self.t.waiter.update(old)


def _keys_and_runs(events: Sequence[RegistryEvent]) -> tuple[set[str], set[str]]:
    keys: set[str] = set()
    run_ids: set[str] = set()
    for ev in events:
        key = getattr(ev, "session_key", None)
        if key:
            keys.add(key)
        run_id = getattr(ev, "run_id", None)
        if run_id:
            run_ids.add(run_id)
        if isinstance(ev, Snapshot):
            keys.update(e.session_key for e in ev.entries)
            keys.update(ev.session_statuses)
            run_ids.update(e.run_id for e in ev.entries)
    return keys, run_ids


# --- Applying events ----------------------------------------------------------------


class _Applier:
    """Applies sequenced events of one gateway to a batch's in-memory objects."""

    def __init__(self, batch: _Batch, gw: _GatewayRow) -> None:
        self.b = batch
        self.gw = gw
        self.dt = batch.t.dt
        self.js = batch.t.js
        self.handlers: dict[type, Callable[[Any], _Session | None]] = {
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
        }

    def apply(self, event: RegistryEvent) -> None:
        s = self.handlers[type(event)](event)
        data = _snapshot_data(event) if isinstance(event, Snapshot) else _event_data(event)
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
        s: _Session | None,
        run_id: str,
        data: dict[str, Any],
    ) -> None:
        dt = self.dt
        self.b.timeline.append(
            [
                self.gw.pk,
                s.pk if s else None,
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

    def lock_acquired(self, ev: LockAcquired) -> _Session:
        s = self.b.session(self.gw, ev.session_key, ev.at)
        if s.locked and s.run_id != ev.run_id:
            self._release(s, ev.at, "reconciled", ev.boot_id)
        run = self.b.run(self.gw, s, ev.run_id)
        run.session_pk, run.boot_id, run.turn_kind = s.pk, ev.boot_id, ev.turn_kind
        run.gateway_session_id = ev.session_id or run.gateway_session_id
        run.message_id, run.preview = ev.message_id, ev.message_preview[:200]
        run.phase, run.started_at, run.last_activity_at = ev.phase, ev.at, ev.at
        s.locked, s.run_id, s.phase = True, ev.run_id, ev.phase
        s.result = s.result_code = ""
        s.lock_acquired_at = s.last_progress_at = ev.at
        s.ended_at = None
        s.session_id = ev.session_id or s.session_id
        return s

    def phase_changed(self, ev: PhaseChanged) -> _Session:
        s = self.b.session(self.gw, ev.session_key, ev.at)
        run = self.b.run(self.gw, s, ev.run_id)
        run.phase, run.last_activity_at = ev.phase, ev.at
        if s.locked and s.run_id == ev.run_id:
            s.phase, s.last_progress_at = ev.phase, ev.at
        return s

    def run_activity(self, ev: RunActivity) -> _Session:
        s = self.b.session(self.gw, ev.session_key, ev.at)
        self.b.run(self.gw, s, ev.run_id).last_activity_at = ev.at
        if s.locked and s.run_id == ev.run_id:
            s.last_progress_at = ev.at
        return s

    def run_ended(self, ev: RunEnded) -> _Session:
        s = self.b.session(self.gw, ev.session_key, ev.at)
        run = self.b.run(self.gw, s, ev.run_id)
        run.result, run.code, run.ended_at = ev.result, ev.code, ev.at
        if run.phase not in TERMINAL_PHASES:
            run.phase = ev.result
        if s.locked and s.run_id == ev.run_id:
            s.result, s.result_code, s.ended_at, s.phase = ev.result, ev.code, ev.at, run.phase
        return s

    def lock_released(self, ev: LockReleased) -> _Session:
        s = self.b.session(self.gw, ev.session_key, ev.at)
        run = self.b.run(self.gw, s, ev.run_id)
        run.released_at, run.release_how = ev.at, ev.how
        if s.locked and s.run_id == ev.run_id:
            s.unlock()
        return s

    def _release(self, s: _Session, at: float, how: str, boot_id: str) -> None:
        """Close the session's held run without a gateway event saying so."""
        run = self.b.run(self.gw, s, s.run_id)
        if run.released_at is None:
            run.released_at, run.release_how = at, how
        self._timeline(boot_id, None, f"lock_{how}", at, at, s, s.run_id, {"how": how})
        s.unlock()

    # Waiters, skips, statuses --------------------------------------------------------

    def waiter_added(self, ev: WaiterAdded) -> _Session:
        s = self.b.session(self.gw, ev.session_key, ev.at)
        w = _Waiter(
            None,
            s.pk,
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
        self.b.waiters[s.pk][(ev.boot_id, ev.waiter_id)] = w
        self.b.dirty_waiters.append(w)
        return s

    def waiter_resolved(self, ev: WaiterResolved) -> _Session:
        s = self.b.session(self.gw, ev.session_key, ev.at)
        w = self.b.waiters[s.pk].get((ev.boot_id, ev.waiter_id))
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

    def dispatch_skipped(self, ev: DispatchSkipped) -> _Session:
        s = self.b.session(self.gw, ev.session_key, ev.at)
        self.b.skips.append(
            (
                self.gw.pk,
                s.pk,
                "skip",
                ev.reason,
                "",
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

    def drain_failed(self, ev: FollowupDrainFailed) -> _Session:
        s = self.b.session(self.gw, ev.session_key, ev.at)
        self.b.skips.append(
            (
                self.gw.pk,
                s.pk,
                "drain_failed",
                ev.error[:64],
                ev.message,
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

    def status_changed(self, ev: SessionStatusChanged) -> _Session:
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
                s.unlock()
            self.b.dirty_sessions.add(s.pk)
        for s in self.b.by_pk.values():
            if s.gateway_pk != self.gw.pk:
                continue
            if s.locked:  # a lock whose run row never reached the store
                s.unlock()
                self.b.dirty_sessions.add(s.pk)
            for w in self.b.waiters[s.pk].values():
                if w.resolved_at is None and w.boot_id != new_boot:
                    self.b.resolve_waiter(w, at, "cleared")
                    self.b.dirty_sessions.add(s.pk)
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
            if s.gateway_pk != self.gw.pk:
                continue
            entry = live.get(s.key)
            if entry is None:
                self._reconcile_absent(s, ev)
            else:
                self._reconcile_entry(self.b.session(self.gw, s.key, ev.at), entry, ev)
        for key, status in ev.session_statuses.items():
            s = self.b.sessions[(self.gw.pk, key)]
            if s.store_status != status:
                s = self.b.session(self.gw, key, ev.at)
                s.store_status, s.store_status_at = status, ev.at
        self.gw.version = ev.version or self.gw.version
        self.gw.profile = ev.profile or self.gw.profile
        return None

    def _reconcile_absent(self, s: _Session, ev: Snapshot) -> None:
        open_waiters = [w for w in self.b.waiters[s.pk].values() if w.resolved_at is None]
        if not s.locked and not open_waiters:
            return
        self.b.session(self.gw, s.key, ev.at)
        if s.locked:
            self._release(s, ev.at, "reconciled", ev.boot_id)
        for w in open_waiters:
            self.b.resolve_waiter(w, ev.at, "cleared")

    def _reconcile_entry(self, s: _Session, entry: SnapshotEntry, ev: Snapshot) -> None:
        if s.locked and s.run_id != entry.run_id:
            self._release(s, ev.at, "reconciled", ev.boot_id)
        same_run = s.locked and s.run_id == entry.run_id
        run = self.b.run(self.gw, s, entry.run_id)
        run.session_pk, run.boot_id = s.pk, ev.boot_id
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

    def _reconcile_waiters(self, s: _Session, entry: SnapshotEntry, ev: Snapshot) -> None:
        known = self.b.waiters[s.pk]
        listed = {(ev.boot_id, w.waiter_id) for w in entry.waiters}
        for key, w in known.items():
            if w.resolved_at is None and key not in listed:
                self.b.resolve_waiter(w, ev.at, "cleared")
        for sw in entry.waiters:
            if (ev.boot_id, sw.waiter_id) in known:
                continue
            w = _Waiter(
                None,
                s.pk,
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


# --- Flags --------------------------------------------------------------------------


class _FlagWriter:
    """Runs detect over sessions and turns findings into Flag rows."""

    def __init__(self, tables: _Tables, thresholds: detect.Thresholds) -> None:
        self.t = tables
        self.th = thresholds

    def evaluate(
        self,
        sessions: Sequence[_Session],
        waiters: dict[int, dict[tuple[str, str], _Waiter]],
        now: float,
    ) -> set[int]:
        """Re-run the rules; write flag changes; return pks of sessions whose flags changed."""
        if not sessions:
            return set()
        pks = [s.pk for s in sessions]
        skips, outcomes = self._recent(pks, now)
        active = self._active_flags(pks)
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[int, list[Any]]] = []
        clears: list[tuple[int, list[Any]]] = []
        changed: set[int] = set()
        summaries: list[tuple[int, list[Any]]] = []
        for s in sessions:
            flags = active.get(s.pk, {})
            open_waiters = waiters.get(s.pk, {})
            if not _may_need_flags(s, flags, open_waiters, s.pk in skips or s.pk in outcomes):
                continue
            facts = _facts(s, open_waiters, skips.get(s.pk, ()), outcomes.get(s.pk, []))
            findings = detect.evaluate(facts, now, self.th)
            if self._diff(s.pk, findings, flags, now, inserts, updates, clears):
                changed.add(s.pk)
            count, worst = len(findings), detect.worst_severity(findings)
            if (count, worst) != (s.flag_count, s.worst_severity):
                s.flag_count, s.worst_severity = count, worst
                summaries.append((s.pk, [count, worst]))
                changed.add(s.pk)
        self.t.flag_clear.update(clears)  # before inserts: one active flag per code
        self.t.flag.insert(inserts)
        self.t.flag_update.update(updates)
        self.t.session_flags.update(summaries)
        return changed

    @staticmethod
    def _diff(
        session_pk: int,
        findings: list[detect.Finding],
        flags: dict[str, tuple[int, str, dict[str, Any]]],
        now: float,
        inserts: list[tuple[Any, ...]],
        updates: list[tuple[int, list[Any]]],
        clears: list[tuple[int, list[Any]]],
    ) -> bool:
        changed = False
        codes = set()
        for f in findings:
            codes.add(f.code)
            current = flags.get(f.code)
            if current is None:
                inserts.append(
                    (session_pk, f.code, f.severity, f.why, f.since, f.details, now, None)
                )
                changed = True
            elif (current[1], current[2]) != (f.severity, f.details):
                # Still true: keep the row and its ``since``, refresh what it says.
                updates.append((current[0], [f.severity, f.why, f.details]))
                changed = True
        for code, (pk, _sev, _details) in flags.items():
            if code not in codes:
                clears.append((pk, [now]))
                changed = True
        return changed

    def _recent(
        self, pks: list[int], now: float
    ) -> tuple[dict[int, list[float]], dict[int, list[tuple[float, str]]]]:
        skip_w, alt_w = detect.windows(self.th)
        skips: dict[int, list[float]] = defaultdict(list)
        outcomes: dict[int, list[tuple[float, str]]] = defaultdict(list)
        where, params = _in("session_id", pks)
        dt = self.t.dt
        for session_pk, kind, t in self.t.skip_read.select(
            f"{where} AND ((kind = %s AND at >= %s) OR (kind = %s AND at >= %s))",
            [*params, "skip", dt(now - skip_w), "drain_failed", dt(now - alt_w)],
        ):
            if kind == "skip":
                skips[session_pk].append(t)
            else:
                outcomes[session_pk].append((t, "drain_failed"))
        # Admissions only matter where enough drain failures could make the alternating
        # pattern, so they are read only for those sessions: most sessions have none.
        enough = self.th.alternating_min_failures
        failing, failing_params = _in(
            "session_id", [pk for pk, failures in outcomes.items() if len(failures) >= enough]
        )
        kinds, kind_params = _in("turn_kind", ADMISSION_TURN_KINDS)
        for session_pk, started in self.t.run_started_read.select(
            f"{failing} AND started_at >= %s AND {kinds}",
            [*failing_params, dt(now - alt_w), *kind_params],
        ):
            outcomes[session_pk].append((started, "ok"))
        for items in outcomes.values():
            items.sort()
        return skips, outcomes

    def _active_flags(self, pks: list[int]) -> dict[int, dict[str, tuple[int, str, Any]]]:
        active: dict[int, dict[str, tuple[int, str, Any]]] = defaultdict(dict)
        where, params = _in("session_id", pks)
        for pk, session_pk, code, severity, details in self.t.flag_read.select(
            f"{where} AND cleared_at IS NULL", params
        ):
            active[session_pk][code] = (pk, severity, details)
        return active


def _may_need_flags(
    s: _Session, flags: dict[str, Any], waiters: dict[tuple[str, str], _Waiter], recent: bool
) -> bool:
    """Tick's criterion: an idle session with no waiters, skips or flags cannot be flagged."""
    if s.locked or flags or s.flag_count or recent:
        return True
    return any(w.resolved_at is None for w in waiters.values())


def _facts(
    s: _Session,
    waiters: dict[tuple[str, str], _Waiter],
    skips: Sequence[float],
    outcomes: Sequence[tuple[float, str]],
) -> detect.SessionFacts:
    return detect.SessionFacts(
        session_key=s.key,
        locked=s.locked,
        run_id=s.run_id,
        phase=s.phase,
        result=s.result,
        lock_acquired_at=s.lock_acquired_at,
        last_progress_at=s.last_progress_at,
        ended_at=s.ended_at,
        store_status=s.store_status,
        store_status_at=s.store_status_at,
        waiters=tuple(
            detect.WaiterFact(w.waiter_id, w.since, w.timeout_ms)
            for w in waiters.values()
            if w.resolved_at is None
        ),
        skips=tuple(sorted(skips)),
        outcomes=tuple(outcomes),
    )


# --- The public face ----------------------------------------------------------------


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
        gw = _load_gateway(name)
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
        result.applied += len(seq.ready)
        result.changed_sessions.update((name, key) for key in changed)
        gw.boot_id, gw.last_seq, gw.past_boots = seq.boot_id, seq.last_seq, seq.past_boots
        Gateway.objects.filter(pk=gw.pk).update(
            boot_id=gw.boot_id,
            last_seq=gw.last_seq,
            past_boot_ids=gw.past_boots,
            version=gw.version,
            profile=gw.profile,
        )
        return seq

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


def _aware(value: float | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(value, UTC)


def _load_gateway(name: str) -> _GatewayRow:
    gw, _ = Gateway.objects.get_or_create(name=name)
    return _GatewayRow(
        gw.pk,
        gw.name,
        gw.boot_id,
        gw.last_seq,
        list(gw.past_boot_ids or []),
        gw.version,
        gw.profile,
    )
