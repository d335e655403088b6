"""Filling a store fast for the benchmarks that need a big one: timeline rows in bulk SQL.

One statement per chunk generates the rows inside the database (a recursive CTE
on SQLite, ``generate_series`` on PostgreSQL), so a million rows take seconds,
not the minutes the ORM would. Rows look like ingest's: they belong to
existing sessions (spread evenly), carry the usual kinds and a small ``data``,
and are received over the last ``span_s`` seconds before ``now``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

CHUNK = 100_000  # rows per statement (and transaction)
KINDS = ("lock_acquired", "phase_changed", "run_activity", "run_ended", "lock_released")
_COLUMNS = "gateway_id, session_id, boot_id, seq, kind, at, received_at, run_id, data"


def _kind_sql() -> str:
    cases = " ".join(f"WHEN {n} THEN '{k}'" for n, k in enumerate(KINDS))
    return f"CASE i % {len(KINDS)} {cases} END"


def fill_sql(vendor: str) -> str:
    """One statement inserting timeline rows ``lo`` ≤ i < ``hi`` over sessions in a pk range."""
    table = "adminpanel_timelineevent"
    data = '\'{"activity": "delta"}\''
    if vendor == "postgresql":
        return (
            f"INSERT INTO {table} ({_COLUMNS}) "
            f"SELECT s.gateway_id, s.id, 'bulk-boot', i, {_kind_sql().replace('%', '%%')}, t, t, "
            f"'run-' || (i / 7), {data}::jsonb "
            f"FROM (SELECT i, %s::timestamptz + i * (%s * interval '1 millisecond') AS t, "
            f"%s + i %% %s AS sid FROM generate_series(%s, %s - 1) AS i) AS g "
            f"JOIN adminpanel_session s ON s.id = g.sid"
        )
    return (
        f"WITH RECURSIVE c(i) AS (SELECT %s UNION ALL SELECT i + 1 FROM c WHERE i + 1 < %s) "
        f"INSERT INTO {table} ({_COLUMNS}) "
        f"SELECT s.gateway_id, s.id, 'bulk-boot', i, {_kind_sql().replace('%', '%%')}, t, t, "
        f"'run-' || (i / 7), {data} "
        f"FROM (SELECT i, strftime('%%Y-%%m-%%d %%H:%%M:%%f', %s, "
        f"'+' || (i * %s / 1000.0) || ' seconds') AS t, %s + i %% %s AS sid FROM c) AS g "
        f"JOIN adminpanel_session s ON s.id = g.sid"
    )


def load_timeline(rows: int, now: datetime, span_s: float = 29 * 86400) -> int:
    """``rows`` timeline rows over every stored session (pks assumed dense); rows stored."""
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        cursor.execute("SELECT min(id), max(id) FROM adminpanel_session")
        first, last = cursor.fetchone()
    sessions = last - first + 1
    step_ms = span_s * 1000 / rows
    t0 = now - timedelta(seconds=span_s)
    sql = fill_sql(connection.vendor)
    for lo in range(0, rows, CHUNK):
        hi = min(rows, lo + CHUNK)
        if connection.vendor == "postgresql":
            params: list[Any] = [t0, step_ms, first, sessions, lo, hi]
        else:
            naive = str(t0.astimezone(UTC).replace(tzinfo=None))
            params = [lo, hi, naive, step_ms, first, sessions]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
    analyze()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM adminpanel_timelineevent")
        return int(cursor.fetchone()[0])


def analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
