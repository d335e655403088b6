"""Plain SQL for ingest: value adapters and readers, INSERT/UPDATE/SELECT per table."""

from __future__ import annotations

import json
import math
import weakref
import zlib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import compress
from operator import ne
from typing import Any

from django.db import IntegrityError, connection, models, transaction

from adminpanel import prepared_sql
from adminpanel.ingest.rows import (
    RUN_WRITE,
    SESSION_FLAG_SUMMARY,
    SESSION_LOAD,
    SESSION_WRITE,
    WAITER_WRITE,
)
from adminpanel.models import DispatchSkip, Flag, Gateway, Run, Session, TimelineEvent, Waiter

_EPOCH = datetime(1970, 1, 1)
# From this many changed rows on, updates are grouped by the columns they changed.
_GROUP_UPDATES_FROM = 64
# From this many rows on, PostgreSQL gets them by COPY; fewer (the live path's few
# events) go by executemany, one pipelined round trip where COPY takes three.
_COPY_FROM = 64
# The staging tables each PostgreSQL connection has committed (temporary tables
# last as long as the connection; one created in a rolled-back transaction does not).
_STAGED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def _datetime_adapter() -> Callable[[float | None], Any]:
    """Epoch seconds → what the backend stores, without a model round trip per value."""
    if connection.vendor == "sqlite":
        return _sqlite_text
    return _utc


def _utc(ts: float | None) -> datetime | None:
    """Epoch seconds → an aware UTC datetime (``aware`` for values known to be numbers)."""
    return None if ts is None else _fromtimestamp(ts, UTC)


_fromtimestamp = datetime.fromtimestamp


def _datetime_reader() -> Callable[[Any], float] | None:
    """A stored datetime → epoch seconds: SQLite hands back its text; PostgreSQL
    is asked for the epoch itself (see ``Table.selected``), so needs no reader."""
    if connection.vendor == "sqlite":
        return _sqlite_seconds
    return None


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


def sql_in(column: str, values: Iterable[Any]) -> tuple[str, list[Any]]:
    """``column IN (%s, ...)``; an always-false condition for no values."""
    params = list(values)
    if not params:
        return "1 = 0", []
    if connection.vendor == "postgresql":  # one array parameter, however many values
        return f"{column} = ANY(%s)", [params]
    return f"{column} IN ({', '.join(['%s'] * len(params))})", params


class Table:
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
        # On PostgreSQL a batch's rows travel by COPY (formatted in C) into a
        # per-connection staging table, then one INSERT or UPDATE takes them from
        # there: one statement where executemany sends one per row.
        self.copies = connection.vendor == "postgresql"
        self.pk = connection.ops.quote_name(str(meta.pk.column))
        digest = zlib.crc32(",".join(self.columns).encode())
        self.stage = connection.ops.quote_name(f"stage_{meta.db_table}_{digest:08x}")

        # On SQLite a bare datetime column goes through Django's regex converter on
        # fetch; an expression has no declared type, so it arrives as plain text.
        # PostgreSQL sends the epoch as a double: no datetime is built to be undone.
        as_time = (
            "CAST({} AS TEXT)"
            if connection.vendor == "sqlite"
            else "EXTRACT(EPOCH FROM {})::float8"
        )
        self.selected = [
            as_time.format(c) if isinstance(f, models.DateTimeField) else c
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
        with prepared_sql.cursor() as cursor:
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
        params = rows if adapted else [self.adapt(r) for r in rows]
        if self.copies and len(params) >= _COPY_FROM:
            self._insert_copied(params, skip_existing)
            return
        marks = ", ".join(["%s"] * len(self.columns))
        sql = f"INSERT INTO {self.table} ({', '.join(self.columns)}) VALUES ({marks})"
        if skip_existing:  # same syntax on SQLite >= 3.24 and PostgreSQL
            sql += " ON CONFLICT DO NOTHING"
        with prepared_sql.cursor() as cursor:
            cursor.executemany(sql, params)

    def _insert_copied(self, rows: Sequence[Sequence[Any]], skip_existing: bool) -> None:
        columns = ", ".join(self.columns)
        if skip_existing:
            # Rows already stored are rare (a rewound cursor): copy straight in, and
            # only when that meets one go the long way round through the stage.
            try:
                with transaction.atomic(), prepared_sql.bound_cursor() as cursor:
                    self._copy(cursor, self.table, columns, rows)
                return
            except IntegrityError:
                pass
            with prepared_sql.bound_cursor() as cursor:
                self._stage(cursor, columns, rows)
                # A staging table is read in the order it was written: ids follow the batch.
                cursor.execute(
                    f"INSERT INTO {self.table} ({columns}) SELECT {columns} FROM {self.stage} "
                    f"ON CONFLICT DO NOTHING; TRUNCATE {self.stage}"
                )
            return
        with prepared_sql.bound_cursor() as cursor:
            self._copy(cursor, self.table, columns, rows)

    @staticmethod
    def _copy(cursor: Any, table: str, columns: str, rows: Iterable[Sequence[Any]]) -> None:
        with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def _stage(self, cursor: Any, columns: str, rows: Iterable[Sequence[Any]]) -> None:
        """Copy ``rows`` (of ``columns``) into this connection's staging table.

        The table is left empty after each use (the statement that reads it
        truncates it; a failure rolls its rows back), so it is only created here.
        """
        staged = _STAGED.setdefault(connection.connection, set())
        if self.stage not in staged:
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {self.stage} ON COMMIT DELETE ROWS AS "
                f"SELECT {self.pk}, {', '.join(self.columns)} FROM {self.table} WITH NO DATA"
            )
            transaction.on_commit(lambda: staged.add(self.stage))
        self._copy(cursor, self.stage, columns, rows)

    def update(self, rows: Sequence[tuple[int, Sequence[Any]]]) -> None:
        """``rows``: (primary key, values in ``names`` order)."""
        self.update_some(tuple(range(len(self.columns))), rows)

    def update_some(self, only: tuple[int, ...], rows: Sequence[tuple[int, Sequence[Any]]]) -> None:
        """Set only the columns at positions ``only``; ``rows``: (primary key, their values).

        Leaving unchanged columns out of the SET spares SQLite the index entries
        of columns that did not move, and the adapting of values that did not.
        """
        if not rows or not only:
            return
        sets = ", ".join(f"{self.columns[i]} = %s" for i in only)
        sql = f"UPDATE {self.table} SET {sets} WHERE {connection.ops.quote_name('id')} = %s"
        adapters = [self.adapters[i] for i in only]
        params = [
            [a(v) if a is not None else v for a, v in zip(adapters, values, strict=True)] + [pk]
            for pk, values in rows
        ]
        if self.copies and len(params) >= _COPY_FROM:
            self._update_copied(only, params)
            return
        with prepared_sql.cursor() as cursor:
            cursor.executemany(sql, params)

    def _update_copied(self, only: tuple[int, ...], rows: list[list[Any]]) -> None:
        """``rows``: the values at ``only``, then the primary key."""
        columns = [self.columns[i] for i in only]
        sets = ", ".join(f"{c} = s.{c}" for c in columns)
        with prepared_sql.bound_cursor() as cursor:
            self._stage(cursor, ", ".join([*columns, self.pk]), rows)
            cursor.execute(
                f"UPDATE {self.table} AS t SET {sets} FROM {self.stage} AS s "
                f"WHERE t.{self.pk} = s.{self.pk}; TRUNCATE {self.stage}"
            )

    def update_changed(self, rows: Iterable[tuple[int, Sequence[Any], Sequence[Any]]]) -> None:
        """``rows``: (primary key, values, values as loaded); writes only what changed.

        A big batch groups its rows by the columns they changed, one statement
        per group; a small one (the live path: a few events at a time) is one
        statement over every column any row changed, as each statement costs
        more than a few columns written again.
        """
        positions = range(len(self.columns))
        changed = []
        for pk, values, loaded in rows:
            only = tuple(compress(positions, map(ne, values, loaded)))
            if only:
                changed.append((pk, values, only))
        # On PostgreSQL every update writes a whole new row version anyway, so
        # one statement over the union costs the least there at any size.
        if self.copies or len(changed) < _GROUP_UPDATES_FROM:
            union = tuple(sorted({i for _, _, only in changed for i in only}))
            self.update_some(union, [(pk, [values[i] for i in union]) for pk, values, _ in changed])
            return
        groups: dict[tuple[int, ...], list[tuple[int, list[Any]]]] = {}
        for pk, values, only in changed:
            groups.setdefault(only, []).append((pk, [values[i] for i in only]))
        for only, group in groups.items():
            self.update_some(only, group)


class Tables:
    """Built lazily once per Ingestor: the connection's vendor decides the adapters."""

    def __init__(self) -> None:
        cursor = ("boot_id", "last_seq", "past_boot_ids", "version", "profile")
        self.gateway_read = Table(Gateway, ("id", "name", *cursor))
        self.gateway_cursor = Table(Gateway, cursor)
        self.session_read = Table(Session, SESSION_LOAD)
        self.run_read = Table(Run, ("id", "gateway", "session", *RUN_WRITE[2:]))
        self.waiter_read = Table(Waiter, ("id", "session", *WAITER_WRITE[1:]))
        self.skip_read = Table(DispatchSkip, ("session", "kind", "at"))
        self.run_started_read = Table(Run, ("session", "started_at"))
        self.flag_read = Table(Flag, ("id", "session", "code", "severity", "details"))
        self.session = Table(Session, SESSION_WRITE)
        self.session_flags = Table(Session, SESSION_FLAG_SUMMARY)
        self.run = Table(Run, ("gateway", "session", *RUN_WRITE[2:]))
        self.waiter = Table(Waiter, ("session", *WAITER_WRITE[1:]))
        self.timeline = Table(
            TimelineEvent,
            ("gateway", "session", "boot_id", "seq", "kind", "at", "received_at", "run_id", "data"),
        )
        self.skip = Table(
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
        self.flag = Table(
            Flag,
            ("session", "code", "severity", "why", "since", "details", "raised_at", "cleared_at"),
        )
        self.flag_update = Table(Flag, ("severity", "why", "details"))
        self.flag_clear = Table(Flag, ("cleared_at",))
        self.dt = _datetime_adapter()
        self.js = _json_adapter()


def aware(value: float | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(value, UTC)
