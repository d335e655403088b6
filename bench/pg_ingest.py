"""Benchmark ``pg_ingest_events_per_s``: the store's write path on PostgreSQL against raw psycopg.

The recorded stream of ``bench.ingest_bench`` (``EVENTS`` of its events over
1,000 sessions) goes through ``Ingestor.apply`` in batches of 2,000 into a
scratch PostgreSQL database (Django's psycopg 3 backend and pool), flag rules
and all. The baseline (``bench.raw_ingest.RawWriter``) writes the same rows —
sessions, runs, waiters, skips, the product's flags, timeline — into the same
tables (same database, emptied between runs: same constraints and indexes)
with a plain ``psycopg`` connection and ``executemany``, one transaction per
batch, building its rows from the events inside the timed part as the
product does. Both sides' stored row counts are compared (``same_rows``).

PostgreSQL: the server ``RUNBOARD_DATABASE_URL`` names (a scratch database on
it, dropped after), else a PostgreSQL 15 started for the run (``stack.servers``).
The sides take turns, ``RUNS`` runs each; ``value`` and ``baseline`` are
medians, ``ratio`` the median of per-run ratios (each run on stderr).

Run: ``.venv/bin/python -m bench.pg_ingest`` (or ``python -m bench pg_ingest``).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.raw_ingest import TABLES, RawFlag, RawWriter, json_text, table_counts
from bench.streams import recorded_stream
from bench.support import (
    count_rows,
    ingest_batches,
    median_ratio,
    postgres,
    product_flags,
    run_product,
    setup_django_on,
)
from gateway_bridge.events import RegistryEvent

BATCH = 2000
RUNS = 3
EVENTS = int(os.environ.get("BENCH_EVENTS", "100000"))
GATEWAY = "bench"
SCRATCH_DB = "runboard_pg_ingest_bench"


def log(message: str) -> None:
    print(f"pg_ingest: {message}", file=sys.stderr, flush=True)


def empty_store() -> int:
    """Empty the tables ingest writes and rewind the gateway's cursor; its pk."""
    from django.db import connection

    from adminpanel.models import Gateway

    tables = ", ".join([*TABLES.values(), "adminpanel_metriccounter"])
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    gateway, _ = Gateway.objects.get_or_create(name=GATEWAY)
    Gateway.objects.filter(pk=gateway.pk).update(boot_id="", last_seq=0, past_boot_ids=[])
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return gateway.pk


def aware(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def run_raw(
    url: str,
    batches: Sequence[tuple[Sequence[RegistryEvent], float]],
    gateway_pk: int,
    flags: list[RawFlag],
) -> tuple[float, dict[str, int]]:
    """Seconds the baseline takes for every batch over its own psycopg connection; row counts."""
    import psycopg

    with psycopg.connect(url) as db:
        started = time.perf_counter()
        writer = RawWriter(
            db, mark="%s", dt=aware, js=json_text, gateway_pk=gateway_pk, flags=flags
        )
        for i, (events, now) in enumerate(batches):
            writer.apply(events, i, now)
        elapsed = time.perf_counter() - started
        return elapsed, table_counts(db)


def measure(url: str, events: Sequence[RegistryEvent]) -> dict[str, Any]:
    batches = ingest_batches(events, BATCH)
    product: list[float] = []
    raw: list[float] = []
    flags: list[RawFlag] = []
    same = True
    counts: dict[str, int] = {}
    for i in range(RUNS):
        empty_store()
        product.append(len(events) / run_product(batches))
        counts = count_rows()
        flags = flags or product_flags(batches)
        gateway_pk = empty_store()
        elapsed, raw_counts = run_raw(url, batches, gateway_pk, flags)
        raw.append(len(events) / elapsed)
        same = same and counts == raw_counts
        log(f"run {i + 1}: ingest {product[-1]:.0f}/s, raw psycopg {raw[-1]:.0f}/s; "
            f"rows {counts} vs {raw_counts}")  # fmt: skip
    return {
        "metric": "pg_ingest_events_per_s",
        "value": round(statistics.median(product)),
        "unit": "events/s",
        "baseline": round(statistics.median(raw)),
        "ratio": round(median_ratio(product, raw), 3),
        "runs": RUNS,
        "events": len(events),
        "batch": BATCH,
        "backend": "postgresql",
        "baseline_metric": "plain psycopg executemany of the same rows (sessions, runs, "
        "waiters, skips, flags, timeline) into the same tables, rows built in the timed part",
        "same_rows": same,
        "rows": counts,
    }


def main() -> None:
    events = recorded_stream()[:EVENTS]
    with (
        tempfile.TemporaryDirectory(prefix="runboard-pg-ingest-") as tmp,
        postgres(SCRATCH_DB) as url,
    ):
        setup_django_on(Path(tmp), url)
        figures = measure(url, events)
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
