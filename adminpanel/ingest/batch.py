"""One apply()'s working set: load what the events touch once, write it back once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

from adminpanel.ingest.rows import (
    RUN_WRITE,
    SESSION_LOAD,
    SESSION_WRITE,
    SESSION_WRITE_ATTRS,
    WAITER_WRITE,
    GatewayRow,
    RunRow,
    SessionRow,
    WaiterRow,
)
from adminpanel.ingest.sql import Tables, sql_in
from adminpanel.models import Session, parse_session_key
from gateway_bridge.events import RegistryEvent, Snapshot

# Where each written session column sits in a row as read (``SESSION_LOAD`` order).
_SESSION_WRITE_AT = tuple(SESSION_LOAD.index(n) for n in SESSION_WRITE)
# The written columns of an object as one tuple, read in C (a batch writes thousands).
_session_values = attrgetter(*SESSION_WRITE_ATTRS)
_run_values = attrgetter(*RUN_WRITE)
_waiter_values = attrgetter(*WAITER_WRITE)


class Batch:
    """The working set of one apply(): loaded once, mutated in memory, written once."""

    def __init__(self, tables: Tables) -> None:
        self.t = tables
        self.sessions: dict[tuple[int, str], SessionRow] = {}
        self.runs: dict[tuple[int, str], RunRow] = {}
        self.waiters: dict[int, dict[tuple[str, str], WaiterRow]] = defaultdict(dict)
        self.dirty_sessions: set[int] = set()
        self.dirty_runs: dict[tuple[int, str], RunRow] = {}
        self.dirty_waiters: list[WaiterRow] = []
        self.timeline: list[list[Any]] = []
        self.skips: list[tuple[Any, ...]] = []
        self.by_pk: dict[int, SessionRow] = {}
        # Rows as read, keyed like the objects above: writes send only what changed.
        self.loaded_sessions: dict[int, list[Any]] = {}
        self.loaded_runs: dict[int, list[Any]] = {}
        self.loaded_waiters: dict[int, list[Any]] = {}

    # Loading ---------------------------------------------------------------------

    def load(self, gw: GatewayRow, events: Sequence[RegistryEvent], whole: bool) -> None:
        """Load what ``events`` touch; ``whole``: also every locked or waited-on session."""
        keys, run_ids = _keys_and_runs(events)
        self._load_sessions(gw, keys, whole)
        run_ids.update(s.run_id for s in self.by_pk.values() if s.run_id)
        self._load_runs(gw, run_ids, whole)
        self.load_waiters([s.id for s in self.by_pk.values() if s.gateway_id == gw.pk])

    def _load_sessions(self, gw: GatewayRow, keys: set[str], whole: bool) -> None:
        where, params = sql_in("session_key", keys)
        if whole:
            where = f"({where} OR locked = %s OR waiter_count > 0)"
            params.append(True)
        self.add_sessions(f"gateway_id = %s AND {where}", [gw.pk, *params])
        missing = [k for k in keys if (gw.pk, k) not in self.sessions]
        if missing:
            # Few per batch once a gateway is known, so the ORM's defaults are worth it here.
            Session.objects.bulk_create(
                [
                    Session(gateway_id=gw.pk, session_key=k, agent=a[:64], channel=c[:64])
                    for k in missing
                    for a, c in [parse_session_key(k)]
                ],
                ignore_conflicts=True,
            )
            where, params = sql_in("session_key", missing)
            self.add_sessions(f"gateway_id = %s AND {where}", [gw.pk, *params])

    def add_sessions(self, where: str, params: Sequence[Any]) -> None:
        for row in self.t.session_read.select(where, params):
            s = SessionRow(*row)
            self.sessions[(s.gateway_id, s.session_key)] = s
            self.by_pk[s.id] = s
            self.loaded_sessions[s.id] = [row[i] for i in _SESSION_WRITE_AT]

    def _load_runs(self, gw: GatewayRow, run_ids: set[str], whole: bool) -> None:
        where, params = sql_in("run_id", run_ids)
        if whole:
            where = f"({where} OR released_at IS NULL)"
        for row in self.t.run_read.select(f"gateway_id = %s AND {where}", [gw.pk, *params]):
            run = RunRow(*row)
            self.runs[(run.gateway_pk, run.run_id)] = run
            self.loaded_runs[row[0]] = row[1:]
        orphans = {r.session_pk for r in self.runs.values()} - self.by_pk.keys()
        if orphans:  # open runs of sessions no longer shown as locked
            self.add_sessions(*sql_in("id", orphans))

    def load_waiters(self, session_pks: list[int]) -> None:
        where, params = sql_in("session_id", session_pks)
        for row in self.t.waiter_read.select(f"{where} AND resolved_at IS NULL", params):
            w = WaiterRow(*row)
            self.waiters[w.session_pk][(w.boot_id, w.waiter_id)] = w
            self.loaded_waiters[row[0]] = row[1:]

    # Lookups used while applying -------------------------------------------------------

    def session(self, gw: GatewayRow, key: str, at: float) -> SessionRow:
        s = self.sessions[(gw.pk, key)]
        self.dirty_sessions.add(s.id)
        if s.updated_at is None or at > s.updated_at:
            s.updated_at = at
        return s

    def run(self, gw: GatewayRow, s: SessionRow, run_id: str) -> RunRow:
        run = self.runs.get((gw.pk, run_id))
        if run is None:
            # Seen for the first time mid-life (e.g. its acquisition fell in a gap).
            run = RunRow(None, gw.pk, s.id, run_id)
            self.runs[(gw.pk, run_id)] = run
        self.dirty_runs[(gw.pk, run_id)] = run
        return run

    def resolve_waiter(self, w: WaiterRow, at: float, outcome: str) -> None:
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
            rows.append((pk, _session_values(s), self.loaded_sessions[pk]))
        self.t.session.update_changed(rows)

    def _write_runs(self) -> None:
        new, old = [], []
        for run in self.dirty_runs.values():
            values = _run_values(run)
            if run.pk is None:
                new.append(values)
            else:
                old.append((run.pk, values, self.loaded_runs[run.pk]))
        self.t.run.insert(new)
        self.t.run.update_changed(old)

    def _write_waiters(self) -> None:
        new, old, seen = [], [], set()
        for w in self.dirty_waiters:
            if id(w) in seen:
                continue
            seen.add(id(w))
            values = _waiter_values(w)
            if w.pk is None:
                new.append(values)
            else:
                old.append((w.pk, values, self.loaded_waiters[w.pk]))
        # A gateway that announces the same waiter twice must not fail the batch.
        self.t.waiter.insert(new, skip_existing=True)
        self.t.waiter.update_changed(old)


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
