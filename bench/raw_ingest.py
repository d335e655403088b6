"""The ingest benchmarks' baseline: registry events to store rows, with nothing but the driver.

``RawWriter`` does the work ``Ingestor.apply`` does, written the plain way: it
keeps the gateway's sessions, runs and open waiters in dicts, turns each event
into the rows it changes, and per batch, in one transaction, inserts the new
sessions, runs, waiters, skips and timeline rows and updates the changed ones
(every mutable column), with ``executemany`` on the driver's own connection
(``sqlite3`` or ``psycopg``), into the tables Django's migrations made, so the
constraints and indexes are the product's. The rows are built inside the
timed part, as the product builds them.

What it leaves out is what the product adds on purpose: reading the touched rows
back each batch (it trusts its memory), the reorder buffer (the stream is clean),
and the flag rules. Flags are still written: the product's own flag rows
(taken from a product run, keyed by the batch that raised or cleared them) are
inserted and cleared in the same batches, with the sessions' flag summaries.
``table_counts`` lets a benchmark check both sides stored the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from gateway_bridge.events import (
    TERMINAL_PHASES,
    DispatchSkipped,
    FollowupDrainFailed,
    GatewayStarted,
    LockAcquired,
    LockReleased,
    PhaseChanged,
    RegistryEvent,
    RunActivity,
    RunEnded,
    SessionStatusChanged,
    Snapshot,
    WaiterAdded,
    WaiterResolved,
)

TABLES = {
    "sessions": "adminpanel_session",
    "runs": "adminpanel_run",
    "waiters": "adminpanel_waiter",
    "timeline": "adminpanel_timelineevent",
    "skips": "adminpanel_dispatchskip",
    "flags": "adminpanel_flag",
}
_SEVERITY_ORDER = ("", "info", "warning", "critical")
_NOT_IN_DATA = frozenset(
    {"gateway", "boot_id", "seq", "at", "received_at", "session_key", "run_id", "message_text"}
)
_DATA_NAMES: dict[type, tuple[str, ...]] = {}

SESSION_MUTABLE = (
    "session_id", "store_status", "store_status_at", "locked", "run_id", "phase", "result",
    "result_code", "lock_acquired_at", "last_progress_at", "ended_at", "waiter_count",
    "flag_count", "worst_severity", "updated_at",
)  # fmt: skip
RUN_MUTABLE = (
    "session_id", "boot_id", "gateway_session_id", "turn_kind", "message_id", "preview", "phase",
    "result", "code", "started_at", "last_activity_at", "ended_at", "released_at", "release_how",
)  # fmt: skip
WAITER_MUTABLE = ("resolved_at", "outcome")
WAITER_FIXED = (
    "session_id", "boot_id", "waiter_id", "blocking_run_id", "timeout_ms", "since", "turn_kind",
    "message_id", "preview", "text",
)  # fmt: skip
SKIP_COLUMNS = (
    "gateway_id", "session_id", "kind", "reason", "error", "at", "blocking_run_id", "message_id",
    "preview", "text", "boot_id", "seq",
)  # fmt: skip
TIMELINE_COLUMNS = (
    "gateway_id", "session_id", "boot_id", "seq", "kind", "at", "received_at", "run_id", "data",
)  # fmt: skip
FLAG_COLUMNS = ("id", "session_id", "code", "severity", "why", "since", "details", "raised_at")
_TIMES = frozenset(
    {"store_status_at", "lock_acquired_at", "last_progress_at", "ended_at", "updated_at",
     "started_at", "last_activity_at", "released_at", "resolved_at", "since"}
)  # fmt: skip


@dataclass(slots=True)
class RawFlag:
    """One flag row the product wrote, and the batches that raised and cleared it."""

    session_key: str
    code: str
    severity: str
    why: str
    since: float
    details: Any
    raised_batch: int
    cleared_batch: int | None


class _Row:
    """A row in memory: its pk, whether it is stored yet, and its columns as attributes."""

    def __init__(self, pk: int, **values: Any) -> None:
        self.pk, self.stored = pk, False
        self.__dict__.update(values)

    if TYPE_CHECKING:  # columns are set at run time

        def __getattr__(self, name: str) -> Any: ...

        def __setattr__(self, name: str, value: Any) -> None: ...

    def get(self, names: Sequence[str], dt: Callable[[Any], Any]) -> list[Any]:
        d = self.__dict__
        return [dt(d[n]) if n in _TIMES else d[n] for n in names]


def event_data(ev: RegistryEvent) -> dict[str, Any]:
    """The timeline row's ``data``: the event's own fields, as the product stores them."""
    if isinstance(ev, Snapshot):
        return {
            "entries": [
                {"session_key": e.session_key, "run_id": e.run_id, "phase": e.phase,
                 "result": e.result}
                for e in ev.entries
            ],
            "sessions": len(ev.session_statuses),
            "version": ev.version,
            "profile": ev.profile,
        }  # fmt: skip
    names = _DATA_NAMES.get(type(ev))
    if names is None:
        names = _DATA_NAMES[type(ev)] = tuple(
            f.name for f in fields(ev) if f.name not in _NOT_IN_DATA
        )
    return {n: getattr(ev, n) for n in names}


class RawWriter:
    """One gateway's events written with plain ``executemany``; one transaction per batch.

    ``db``: a DB-API connection (``sqlite3`` in autocommit mode, or ``psycopg``);
    ``mark``: its placeholder; ``dt``/``js``: epoch seconds and JSON to stored values.
    """

    def __init__(
        self,
        db: Any,
        *,
        mark: str,
        dt: Callable[[float | None], Any],
        js: Callable[[Any], Any],
        gateway_pk: int,
        flags: Sequence[RawFlag] = (),
        begin: str = "",
    ) -> None:
        self.db, self.mark, self.dt, self.js, self.begin = db, mark, dt, js, begin
        self.gw = gateway_pk
        self.sessions: dict[str, _Row] = {}
        self.runs: dict[str, _Row] = {}
        self.open_runs: dict[str, _Row] = {}
        self.waiters: dict[tuple[str, str], _Row] = {}  # open ones, by (boot, waiter id)
        self.boot_id, self.last_seq, self.past_boots = "", 0, list[str]()
        self.version = self.profile = ""
        self.next_pk = {"s": 1, "r": 1, "w": 1}
        self.raised: dict[int, list[RawFlag]] = {}
        self.cleared: dict[int, list[RawFlag]] = {}
        for f in flags:
            self.raised.setdefault(f.raised_batch, []).append(f)
            if f.cleared_batch is not None:
                self.cleared.setdefault(f.cleared_batch, []).append(f)
        self.flag_pks: dict[int, int] = {}  # id(RawFlag) -> stored pk
        self.active_flags: dict[str, list[str]] = {}  # session key -> severities
        self._new()

    def _new(self) -> None:
        self.dirty_sessions: dict[str, _Row] = {}
        self.dirty_runs: dict[str, _Row] = {}
        self.dirty_waiters: list[_Row] = []
        self.timeline: list[list[Any]] = []
        self.skips: list[list[Any]] = []

    # Applying ----------------------------------------------------------------------

    def apply(self, events: Sequence[RegistryEvent], batch: int, now: float) -> None:
        """Apply one batch and write it in one transaction."""
        for ev in events:
            if ev.boot_id != self.boot_id:
                if self.boot_id:
                    self._close_boot(ev.boot_id, ev.at)
                    self.past_boots = [*self.past_boots, self.boot_id][-16:]
                self.boot_id = ev.boot_id
            self.last_seq = ev.seq
            s = self._event(ev)
            self._timeline(ev.boot_id, ev.seq, ev.kind, ev.at, ev.received_at, s,
                           getattr(ev, "run_id", ""), event_data(ev))  # fmt: skip
        with self._transaction():
            self._write(batch, now)
        self._new()

    def _event(self, ev: RegistryEvent) -> _Row | None:
        if isinstance(ev, GatewayStarted):
            self.version, self.profile = ev.version, ev.profile
            return None
        if isinstance(ev, Snapshot):
            self._snapshot(ev)
            return None
        key = getattr(ev, "session_key", None)
        if key is None:
            return None
        s = self._session(key, ev.at)
        if isinstance(ev, LockAcquired):
            if s.locked and s.run_id != ev.run_id:
                self._release(s, ev.at, "reconciled", ev.boot_id)
            r = self._run(s, ev.run_id)
            r.boot_id, r.turn_kind = ev.boot_id, ev.turn_kind
            r.gateway_session_id = ev.session_id or r.gateway_session_id
            r.message_id, r.preview = ev.message_id, ev.message_preview[:200]
            r.phase, r.started_at, r.last_activity_at = ev.phase, ev.at, ev.at
            s.locked, s.run_id, s.phase, s.result, s.result_code = True, ev.run_id, ev.phase, "", ""
            s.lock_acquired_at = s.last_progress_at = ev.at
            s.ended_at = None
            s.session_id = ev.session_id or s.session_id
        elif isinstance(ev, PhaseChanged | RunActivity):
            r = self._run(s, ev.run_id)
            r.last_activity_at = ev.at
            if isinstance(ev, PhaseChanged):
                r.phase = ev.phase
            if s.locked and s.run_id == ev.run_id:
                s.last_progress_at = ev.at
                s.phase = r.phase
        elif isinstance(ev, RunEnded):
            r = self._run(s, ev.run_id)
            r.result, r.code, r.ended_at = ev.result, ev.code, ev.at
            r.phase = r.phase if r.phase in TERMINAL_PHASES else ev.result
            if s.locked and s.run_id == ev.run_id:
                s.result, s.result_code, s.ended_at, s.phase = ev.result, ev.code, ev.at, r.phase
        elif isinstance(ev, LockReleased):
            r = self._run(s, ev.run_id)
            r.released_at, r.release_how = ev.at, ev.how
            self.open_runs.pop(ev.run_id, None)
            if s.locked and s.run_id == ev.run_id:
                _unlock(s)
        elif isinstance(ev, WaiterAdded):
            self._waiter(s, ev.boot_id, ev.waiter_id, ev.blocking_run_id, ev.timeout_ms,
                         ev.at, ev.turn_kind, ev.message_id, ev.message_preview,
                         ev.message_text)  # fmt: skip
        elif isinstance(ev, WaiterResolved):
            w = self.waiters.pop((ev.boot_id, ev.waiter_id), None)
            if w is not None:
                self._resolve(s, w, ev.at, ev.outcome)
        elif isinstance(ev, DispatchSkipped | FollowupDrainFailed):
            kind, reason, error = (
                ("skip", ev.reason, "")
                if isinstance(ev, DispatchSkipped)
                else ("drain_failed", ev.error[:64], ev.message)
            )
            self.skips.append([self.gw, s.pk, kind, reason, error, self.dt(ev.at),
                               ev.blocking_run_id, ev.message_id, ev.message_preview[:200],
                               ev.message_text, ev.boot_id, ev.seq])  # fmt: skip
        elif isinstance(ev, SessionStatusChanged):
            s.store_status, s.store_status_at = ev.status, ev.at
            s.session_id = ev.session_id or s.session_id
        return s

    def _session(self, key: str, at: float) -> _Row:
        s = self.sessions.get(key)
        if s is None:
            parts = key.split(":")
            s = self.sessions[key] = _Row(
                self._pk("s"), gateway_id=self.gw, session_key=key,
                agent=parts[1] if len(parts) > 2 else "",
                channel=parts[2] if len(parts) > 2 else "",
                session_id="", store_status="", store_status_at=None, locked=False, run_id="",
                phase="", result="", result_code="", lock_acquired_at=None, last_progress_at=None,
                ended_at=None, waiter_count=0, flag_count=0, worst_severity="", updated_at=None,
                auto_action_at=None, auto_policy="",
            )  # fmt: skip
        if s.updated_at is None or at > s.updated_at:
            s.updated_at = at
        self.dirty_sessions[key] = s
        return s

    def _run(self, s: _Row, run_id: str) -> _Row:
        r = self.runs.get(run_id)
        if r is None:
            r = self.runs[run_id] = _Row(
                self._pk("r"), gateway_id=self.gw, session_id=s.pk, run_id=run_id, boot_id="",
                gateway_session_id="", turn_kind="", message_id="", preview="", phase="",
                result="", code="", started_at=None, last_activity_at=None, ended_at=None,
                released_at=None, release_how="", owner=s,
            )  # fmt: skip
            self.open_runs[run_id] = r
        self.dirty_runs[run_id] = r
        return r

    def _waiter(self, s: _Row, boot: str, wid: str, *rest: Any) -> None:
        if (boot, wid) in self.waiters:
            return
        blocking, timeout, since, turn, message_id, preview, text = rest
        w = _Row(self._pk("w"), session_id=s.pk, boot_id=boot, waiter_id=wid,
                 blocking_run_id=blocking, timeout_ms=timeout, since=since, turn_kind=turn,
                 message_id=message_id, preview=preview[:200], text=text, resolved_at=None,
                 outcome="", owner=s)  # fmt: skip
        self.waiters[(boot, wid)] = w
        s.waiter_count += 1
        self.dirty_waiters.append(w)

    def _resolve(self, s: _Row, w: _Row, at: float, outcome: str) -> None:
        w.resolved_at, w.outcome = at, outcome
        s.waiter_count -= 1
        self.dirty_waiters.append(w)

    def _release(self, s: _Row, at: float, how: str, boot_id: str) -> None:
        r = self._run(s, s.run_id)
        if r.released_at is None:
            r.released_at, r.release_how = at, how
        self.open_runs.pop(s.run_id, None)
        self._timeline(boot_id, None, f"lock_{how}", at, at, s, s.run_id, {"how": how})
        _unlock(s)

    def _close_boot(self, new_boot: str, at: float) -> None:
        for run_id, r in list(self.open_runs.items()):
            if r.boot_id == new_boot:
                continue
            r.released_at, r.release_how = at, "restart"
            del self.open_runs[run_id]
            self.dirty_runs[run_id] = r
            s = r.owner
            self._timeline(r.boot_id or self.boot_id, None, "run_lost_at_restart", at, at, s,
                           run_id, {"new_boot_id": new_boot})  # fmt: skip
        for s in self.sessions.values():
            if s.locked:
                _unlock(s)
                self.dirty_sessions[s.session_key] = s
        for key, w in list(self.waiters.items()):
            if w.boot_id != new_boot:
                del self.waiters[key]
                self._resolve(w.owner, w, at, "cleared")
                self.dirty_sessions[w.owner.session_key] = w.owner

    def _snapshot(self, ev: Snapshot) -> None:
        live = {e.session_key: e for e in ev.entries}
        for key, s in list(self.sessions.items()):
            entry = live.get(key)
            open_waiters = [w for w in self.waiters.values() if w.owner is s]
            if entry is None:
                if s.locked or open_waiters:
                    self._session(key, ev.at)
                    if s.locked:
                        self._release(s, ev.at, "reconciled", ev.boot_id)
                    for w in open_waiters:
                        del self.waiters[(w.boot_id, w.waiter_id)]
                        self._resolve(s, w, ev.at, "cleared")
                continue
            self._session(key, ev.at)
            if s.locked and s.run_id != entry.run_id:
                self._release(s, ev.at, "reconciled", ev.boot_id)
            r = self._run(s, entry.run_id)
            r.boot_id, r.turn_kind, r.phase = ev.boot_id, entry.turn_kind, entry.phase
            r.result, r.code = entry.result, entry.code
            r.started_at = entry.started_at or r.started_at or ev.at
            r.last_activity_at = entry.last_activity_at or r.last_activity_at
            r.released_at, r.release_how = None, ""
            self.open_runs[entry.run_id] = r
            s.locked, s.run_id, s.phase, s.result = True, entry.run_id, entry.phase, entry.result
            s.lock_acquired_at = s.lock_acquired_at or r.started_at
            listed = {w.waiter_id for w in entry.waiters}
            for w in open_waiters:
                if w.waiter_id not in listed:
                    del self.waiters[(w.boot_id, w.waiter_id)]
                    self._resolve(s, w, ev.at, "cleared")
            for sw in entry.waiters:
                self._waiter(s, ev.boot_id, sw.waiter_id, entry.run_id, sw.timeout_ms,
                             sw.since, sw.turn_kind, sw.message_id, sw.message_preview,
                             sw.message_text)  # fmt: skip
        for key, status in ev.session_statuses.items():
            s = self._session(key, ev.at)
            s.store_status, s.store_status_at = status, ev.at

    def _timeline(self, boot_id: str, seq: int | None, kind: str, at: float, received: float,
                  s: _Row | None, run_id: str, data: dict[str, Any]) -> None:  # fmt: skip
        self.timeline.append([self.gw, s.pk if s else None, boot_id, seq, kind, self.dt(at),
                              self.dt(received), run_id, self.js(data)])  # fmt: skip

    def _pk(self, kind: str) -> int:
        pk = self.next_pk[kind]
        self.next_pk[kind] = pk + 1
        return pk

    # Writing -----------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        if self.begin:
            self.db.execute(self.begin)
            yield
            self.db.execute("COMMIT")
        else:
            yield
            self.db.commit()

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            cur = self.db.cursor()
            cur.executemany(sql.replace("%s", self.mark), rows)
            cur.close()

    def _insert(self, table: str, names: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        marks = ", ".join(["%s"] * len(names))
        self._many(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", rows)

    def _update(self, table: str, names: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        sets = ", ".join(f"{n} = %s" for n in names)
        self._many(f"UPDATE {table} SET {sets} WHERE id = %s", rows)

    def _upsert_rows(self, table: str, rows: Sequence[_Row], fixed: Sequence[str],
                     mutable: Sequence[str]) -> None:  # fmt: skip
        """New rows inserted whole (pk included), stored ones updated (every mutable column)."""
        dt = self.dt
        new = [r for r in rows if not r.stored]
        self._insert(table, ("id", *fixed, *mutable),
                     [[r.pk, *r.get(fixed, dt), *r.get(mutable, dt)] for r in new])  # fmt: skip
        self._update(table, mutable, [[*r.get(mutable, dt), r.pk] for r in rows if r.stored])
        for r in new:
            r.stored = True

    def _write(self, batch: int, now: float) -> None:
        self._flags(batch, now)
        self._upsert_rows(TABLES["sessions"], list(self.dirty_sessions.values()),
                          ("gateway_id", "session_key", "agent", "channel", "auto_action_at",
                           "auto_policy"), SESSION_MUTABLE)  # fmt: skip
        self._upsert_rows(TABLES["runs"], list(self.dirty_runs.values()),
                          ("gateway_id", "run_id"), RUN_MUTABLE)  # fmt: skip
        waiters = list({id(w): w for w in self.dirty_waiters}.values())
        self._upsert_rows(TABLES["waiters"], waiters, WAITER_FIXED[:1] + WAITER_FIXED[1:],
                          WAITER_MUTABLE)  # fmt: skip
        self._insert(TABLES["skips"], SKIP_COLUMNS, self.skips)
        self._insert(TABLES["timeline"], TIMELINE_COLUMNS, self.timeline)
        self._update("adminpanel_gateway", ("boot_id", "last_seq", "past_boot_ids", "version",
                     "profile"), [[self.boot_id, self.last_seq, self.js(self.past_boots),
                                   self.version, self.profile, self.gw]])  # fmt: skip

    def _flags(self, batch: int, now: float) -> None:
        """The product's flag rows for this batch: clears first (one active flag per code)."""
        clears = []
        for f in self.cleared.get(batch, ()):
            clears.append([self.dt(now), self.flag_pks[id(f)]])
            self.active_flags[f.session_key].remove(f.severity)
            self._summary(f.session_key)
        self._update(TABLES["flags"], ("cleared_at",), clears)
        inserts = []
        for f in self.raised.get(batch, ()):
            pk = self.flag_pks[id(f)] = len(self.flag_pks) + 1
            s = self.sessions[f.session_key]
            inserts.append([pk, s.pk, f.code, f.severity, f.why, self.dt(f.since),
                            self.js(f.details), self.dt(now)])  # fmt: skip
            self.active_flags.setdefault(f.session_key, []).append(f.severity)
            self._summary(f.session_key)
        self._insert(TABLES["flags"], FLAG_COLUMNS, inserts)

    def _summary(self, key: str) -> None:
        s = self.sessions[key]
        active = self.active_flags.get(key, [])
        s.flag_count = len(active)
        s.worst_severity = max(active, key=_SEVERITY_ORDER.index, default="")
        self.dirty_sessions[key] = s


def _unlock(s: _Row) -> None:
    s.locked = False
    s.run_id = s.phase = s.result = s.result_code = ""
    s.lock_acquired_at = s.ended_at = None


def table_counts(db: Any) -> dict[str, int]:
    """Rows per table the writers fill, to check both sides stored the same rows."""
    counts = {}
    for name, table in TABLES.items():
        cur = db.cursor()
        cur.execute(f"SELECT count(*) FROM {table}")
        counts[name] = int(cur.fetchone()[0])
        cur.close()
    return counts


def json_text(value: Any) -> str:
    return json.dumps(value)
