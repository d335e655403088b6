"""Benchmark ``retention_prune``: batched pruning of a 1,000,000-row timeline.

Batches exist so no writer waits behind one long delete: this measures what
they cost in throughput and what they save in the longest lock, against one
plain ``DELETE … WHERE received_at < cutoff`` in the same run (figures and how
to read them: docs/notes/retention.md). SQLite by default (a scratch file);
PostgreSQL when ``RUNBOARD_DATABASE_URL`` is set (a scratch database on that
server, dropped after).

Run: ``.venv/bin/python -m bench.retention_bench``, or on PostgreSQL
``.venv/bin/python -m stack.with_backends -- .venv/bin/python -m bench.retention_bench``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROWS = 1_000_000
OLD_SHARE = 0.3
DAYS = 30
STEP_S = 3  # received_at spacing: 700,000 young rows span 24 days, inside the retention
CHUNK = 100_000  # rows per insert statement (and transaction) while filling the table
SESSIONS = 1000
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
SCRATCH_DB = "runboard_retention_bench"


def log(message: str) -> None:
    print(f"retention_bench: {message}", file=sys.stderr, flush=True)


@contextmanager
def scratch_postgres(url: str) -> Iterator[str]:
    """A fresh database on ``url``'s server for the run; yields its URL, drops it after."""
    import psycopg

    parts = urlsplit(url)
    admin = psycopg.connect(url, autocommit=True)
    admin.execute(f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)")
    admin.execute(f"CREATE DATABASE {SCRATCH_DB}")
    try:
        yield urlunsplit(parts._replace(path=f"/{SCRATCH_DB}"))
    finally:
        from django.db import connection, connections

        connections.close_all()
        if hasattr(connection, "close_pool"):
            connection.close_pool()
        admin.execute(f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)")
        admin.close()


def setup_django(workdir: Path, database_url: str) -> None:
    """Django on a scratch SQLite file under ``workdir``, or on ``database_url``; migrated."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "runboard.settings"
    os.environ["RUNBOARD_DATABASE_URL"] = database_url
    os.environ["RUNBOARD_VAR_DIR"] = str(workdir)
    os.environ.setdefault("RUNBOARD_LOG_LEVEL", "WARNING")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def fill_sql(vendor: str, table: str) -> str:
    """One statement inserting rows ``lo`` ≤ i < ``hi`` (params: see ``fill``)."""
    columns = "gateway_id, session_id, boot_id, seq, kind, at, received_at, run_id, data"
    if vendor == "postgresql":
        return (
            f"INSERT INTO {table} ({columns}) "
            f"SELECT %s, %s + i %% {SESSIONS}, 'bench', i, 'run.phase', t, t, '', '{{}}'::jsonb "
            f"FROM (SELECT i, %s::timestamptz + i * interval '{STEP_S} seconds' AS t "
            f"FROM generate_series(%s, %s - 1) AS i) AS g"
        )
    return (
        f"WITH RECURSIVE c(i) AS (SELECT %s UNION ALL SELECT i + 1 FROM c WHERE i + 1 < %s) "
        f"INSERT INTO {table} ({columns}) "
        f"SELECT %s, %s + i %% {SESSIONS}, 'bench', i, 'run.phase', t, t, '', '{{}}' "
        f"FROM (SELECT i, datetime(%s, '+' || (i * {STEP_S}) || ' seconds') AS t FROM c)"
    )


def fill(lo: int, hi: int, gateway: int, first_session: int, t0: datetime) -> None:
    """Timeline rows ``lo`` ≤ i < ``hi``, row i received at ``t0 + i * STEP_S``, in chunks."""
    from django.db import connection, transaction

    from adminpanel.models import TimelineEvent

    sql = fill_sql(connection.vendor, TimelineEvent._meta.db_table)
    for start in range(lo, hi, CHUNK):
        end = min(hi, start + CHUNK)
        if connection.vendor == "postgresql":
            params: list[Any] = [gateway, first_session, t0, start, end]
        else:
            naive = t0.astimezone(UTC).replace(tzinfo=None)
            params = [start, end, gateway, first_session, str(naive)]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)


def analyze() -> None:
    from django.db import connection

    from adminpanel.models import TimelineEvent

    table = TimelineEvent._meta.db_table
    postgres = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {table}" if postgres else "ANALYZE")


def timeline_count() -> int:
    from adminpanel.models import TimelineEvent

    return TimelineEvent.objects.count()


def single_delete_ms(cutoff: datetime) -> tuple[float, int]:
    """The baseline: every old row in one DELETE statement, one transaction."""
    from django.db import connection, transaction

    from adminpanel.models import TimelineEvent

    table = TimelineEvent._meta.db_table
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        # Adapted as the ORM adapts it (SQLite stores naive UTC text).
        at = connection.ops.adapt_datetimefield_value(cutoff)
        cursor.execute(f"DELETE FROM {table} WHERE received_at < %s", [at])
        deleted = cursor.rowcount
    return (time.perf_counter() - started) * 1000, deleted


def measure() -> dict[str, Any]:
    from django.conf import settings
    from django.db import connection

    from adminpanel import retention
    from adminpanel.models import Gateway, Session

    gateway = Gateway.objects.create(name="bench")
    sessions = Session.objects.bulk_create(
        Session(gateway=gateway, session_key=f"agent:main:telegram:direct:u{n}")
        for n in range(SESSIONS)
    )
    keys = sorted(s.pk for s in sessions)
    first = keys[0]
    if keys != list(range(first, first + SESSIONS)):
        raise SystemExit("expected the bench's sessions to have consecutive keys")
    cutoff = retention.cutoff_for(NOW, DAYS)
    old = int(ROWS * OLD_SHARE)
    t0 = cutoff - timedelta(seconds=old * STEP_S)  # row ``old`` is received at the cutoff

    started = time.perf_counter()
    fill(0, ROWS, gateway.pk, first, t0)
    analyze()
    log(f"{timeline_count()} rows stored in {time.perf_counter() - started:.1f} s")

    baseline_ms, baseline_deleted = single_delete_ms(cutoff)
    log(f"one DELETE: {baseline_deleted} rows in {baseline_ms:.0f} ms")
    fill(0, old, gateway.pk, first, t0)  # the same old rows again
    analyze()

    slept: list[float] = []
    batch = settings.RUNBOARD_PRUNE_BATCH
    started = time.perf_counter()
    result = retention.prune(
        NOW, DAYS, batch, pause_s=retention.default_pause_s(), sleep=slept.append
    )
    elapsed = time.perf_counter() - started
    pruned = result.tables["timeline events"]
    log(
        f"prune: {pruned.deleted} rows in {pruned.batches} batches of {batch}, "
        f"{elapsed:.2f} s working; longest batch {result.longest_batch_ms:.0f} ms"
    )
    left = timeline_count()
    if pruned.deleted != old or baseline_deleted != old or left != ROWS - old:
        raise SystemExit(f"expected {old} old rows each time, {ROWS - old} left; found {left}")
    # The pauses between batches (SQLite) were recorded, not slept: both figures are given.
    pause_s = sum(slept)
    return {
        "metric": "retention_prune",
        "rows": ROWS,
        "deleted": pruned.deleted,
        "batch": batch,
        "batches": pruned.batches,
        "rows_per_s": round(pruned.deleted / (elapsed + pause_s)),
        "rows_per_s_without_pauses": round(pruned.deleted / elapsed),
        "pause_ms": round(retention.default_pause_s() * 1000),
        "max_batch_ms": result.longest_batch_ms,
        "baseline_single_delete_ms": round(baseline_ms, 1),
        "backend": connection.vendor,
    }


def main() -> None:
    url = os.environ.get("RUNBOARD_DATABASE_URL", "")
    with tempfile.TemporaryDirectory(prefix="runboard-retention-bench-") as tmp:
        if url:
            with scratch_postgres(url) as scratch:
                setup_django(Path(tmp), scratch)
                figures = measure()
        else:
            setup_django(Path(tmp), "")
            figures = measure()
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
