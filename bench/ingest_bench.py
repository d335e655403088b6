"""Benchmark ``ingest_events_per_s``: the store's write path against raw SQLite doing the same work.

A recorded 200k-event stream over 1,000 sessions (``bench.streams``) goes
through ``Ingestor.apply`` in batches of 2,000 into a fresh SQLite file (WAL),
flag rules and all. The baseline (``bench.raw_ingest.RawWriter``) writes the
same rows — sessions, runs, waiters, skips, the product's flags, timeline — to
the same tables (a copy of the same migrated file: same constraints and
indexes) with plain ``sqlite3`` ``executemany``, one transaction per batch of
2,000, building its rows from the events inside the timed part as the product
does. Both sides' stored row counts are compared (``same_rows``).

The two sides take turns, ``RUNS`` runs each, so a noisy neighbour slows both
alike; ``value`` and ``baseline`` are medians, ``ratio`` the median of the
per-run ratios (each run's figures go to stderr).

Run: ``.venv/bin/python -m bench.ingest_bench`` (or ``python -m bench``).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.raw_ingest import RawFlag, RawWriter, json_text, table_counts
from bench.streams import recorded_stream
from bench.support import (
    count_rows,
    ingest_batches,
    median_ratio,
    product_flags,
    run_product,
    setup_django_on,
)
from gateway_bridge.events import RegistryEvent

BATCH = 2000
RUNS = 3
GATEWAY = "bench"


def use_database(path: Path) -> None:
    """Point Django's connection at the SQLite file ``path``."""
    from django.db import connection

    connection.close()
    connection.settings_dict["NAME"] = str(path)


def template(workdir: Path) -> Path:
    """A migrated database holding the stream's gateway; each run starts from a copy."""
    from django.db import connection

    from adminpanel.models import Gateway

    path = workdir / "template.sqlite3"
    use_database(path)
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    Gateway.objects.create(name=GATEWAY)
    connection.close()
    return path


_SECONDS: dict[int, str] = {}


def sqlite_text(ts: float | None) -> str | None:
    """Django's SQLite datetime text (``str()`` of the naive UTC datetime), seconds cached."""
    if ts is None:
        return None
    sec = int(ts // 1)
    micro = round((ts - sec) * 1_000_000)
    if micro >= 1_000_000:
        sec, micro = sec + 1, 0
    prefix = _SECONDS.get(sec)
    if prefix is None:
        prefix = _SECONDS[sec] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(sec))
    return prefix if micro == 0 else f"{prefix}.{micro:06d}"


def run_raw(
    batches: Sequence[tuple[Sequence[RegistryEvent], float]], path: Path, flags: list[RawFlag]
) -> tuple[float, dict[str, int]]:
    """Seconds the baseline takes for every batch into the SQLite file ``path``; its row counts."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    (gateway_pk,) = db.execute(
        "SELECT id FROM adminpanel_gateway WHERE name = ?", (GATEWAY,)
    ).fetchone()
    started = time.perf_counter()
    writer = RawWriter(
        db, mark="?", dt=sqlite_text, js=json_text, gateway_pk=gateway_pk, flags=flags,
        begin="BEGIN IMMEDIATE",
    )  # fmt: skip
    for i, (events, now) in enumerate(batches):
        writer.apply(events, i, now)
    elapsed = time.perf_counter() - started
    counts = table_counts(db)
    db.close()
    return elapsed, counts


def measure(events: Sequence[RegistryEvent], workdir: Path) -> dict[str, Any]:
    """Product and baseline take turns; medians of each, the median of per-run ratios."""
    batches = ingest_batches(events, BATCH)
    empty = template(workdir)
    product: list[float] = []
    raw: list[float] = []
    flags: list[RawFlag] = []
    same = True
    for i in range(RUNS):
        path = workdir / f"ingest-{i}.sqlite3"
        shutil.copy(empty, path)
        use_database(path)
        product.append(len(events) / run_product(batches))
        counts = count_rows()
        flags = flags or product_flags(batches)
        raw_path = workdir / f"raw-{i}.sqlite3"
        shutil.copy(empty, raw_path)
        elapsed, raw_counts = run_raw(batches, raw_path, flags)
        raw.append(len(events) / elapsed)
        same = same and counts == raw_counts
        print(
            f"ingest_bench run {i + 1}: ingest {product[-1]:.0f}/s, raw {raw[-1]:.0f}/s; "
            f"rows {counts} vs {raw_counts}",
            file=sys.stderr,
            flush=True,
        )
        path.unlink()
        raw_path.unlink()
    return {
        "metric": "ingest_events_per_s",
        "value": round(statistics.median(product)),
        "unit": "events/s",
        "baseline": round(statistics.median(raw)),
        "ratio": round(median_ratio(product, raw), 3),
        "runs": RUNS,
        "events": len(events),
        "batch": BATCH,
        "backend": "sqlite",
        "baseline_metric": "plain sqlite3 executemany of the same rows (sessions, runs, "
        "waiters, skips, flags, timeline) into the same tables, rows built in the timed part",
        "same_rows": same,
        "rows": counts,
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="runboard-ingest-bench-") as tmp:
        workdir = Path(tmp)
        setup_django_on(workdir, "")
        events = recorded_stream()
        print(json.dumps(measure(events, workdir)), flush=True)


if __name__ == "__main__":
    main()
