"""Benchmark ``ingest_events_per_s``: the store's write path against raw SQLite.

A recorded 200k-event stream over 1,000 sessions (``bench.streams``) goes
through ``Ingestor.apply`` in batches of 2,000 into a fresh SQLite file (WAL),
flag rules and all. The baseline is plain ``sqlite3.executemany`` of the same
stream's timeline rows, pre-built, into a table with the same DDL, on the
same disk, committed per batch of 2,000. The two sides take turns, three runs
each, so a noisy neighbour slows both alike; the medians are printed as one
JSON line (each run's figures go to stderr).

Run: ``.venv/bin/python -m bench.ingest_bench`` (or ``python -m bench``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.streams import recorded_stream
from gateway_bridge.events import RegistryEvent, Snapshot

BATCH = 2000
RUNS = 3
TIMELINE_TABLE = "adminpanel_timelineevent"


def _setup_django(workdir: Path) -> None:
    """Point Django at a scratch SQLite file (WAL, the default settings) and set it up."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "runboard.settings")
    from django.conf import settings

    if not settings.configured:
        os.environ["RUNBOARD_DATABASE_URL"] = ""
        os.environ["RUNBOARD_VAR_DIR"] = str(workdir)
        os.environ.setdefault("RUNBOARD_LOG_LEVEL", "WARNING")
    import django

    django.setup()


def _fresh_database(path: Path) -> None:
    from django.core.management import call_command
    from django.db import connection

    connection.close()
    connection.settings_dict["NAME"] = str(path)
    if connection.vendor != "sqlite":
        raise SystemExit("ingest_bench measures SQLite; unset RUNBOARD_DATABASE_URL")
    call_command("migrate", verbosity=0, interactive=False)


def run_ingest(events: Sequence[RegistryEvent], path: Path) -> float:
    """Events per second through Ingestor.apply into a fresh database at ``path``."""
    from adminpanel.ingest import Ingestor

    _fresh_database(path)
    now = [events[0].at]
    # The clock follows the stream, so flag rules see the lock ages a live run would.
    ingestor = Ingestor(clock=lambda: now[0])
    started = time.perf_counter()
    for i in range(0, len(events), BATCH):
        batch = events[i : i + BATCH]
        now[0] = batch[-1].at
        ingestor.apply(batch)
    elapsed = time.perf_counter() - started
    from django.db import connection

    connection.close()
    return len(events) / elapsed


def _sqlite_text(ts: float) -> str:
    return str(datetime.fromtimestamp(ts, UTC).replace(tzinfo=None))


def timeline_rows(events: Sequence[RegistryEvent]) -> list[tuple[Any, ...]]:
    """The rows ingest writes for ``events``, already in SQLite's storage form."""
    from adminpanel.ingest.applier import event_data, snapshot_data

    sessions: dict[str, int] = {}
    rows = []
    for ev in events:
        key = getattr(ev, "session_key", "")
        session = sessions.setdefault(key, len(sessions) + 1) if key else None
        data = snapshot_data(ev) if isinstance(ev, Snapshot) else event_data(ev)
        rows.append(
            (
                1,
                session,
                ev.boot_id,
                ev.seq,
                ev.kind,
                _sqlite_text(ev.at),
                _sqlite_text(ev.received_at),
                getattr(ev, "run_id", ""),
                json.dumps(data),
            )
        )
    return rows


def _timeline_ddl(django_db: Path) -> list[str]:
    with sqlite3.connect(django_db) as db:
        found = db.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL "
            "ORDER BY type = 'index'",
            (TIMELINE_TABLE,),
        ).fetchall()
    return [sql for (sql,) in found]


def run_raw(rows: Sequence[tuple[Any, ...]], path: Path, ddl: list[str]) -> float:
    """Rows per second of plain executemany, same DDL, committed per batch."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    for sql in ddl:
        db.execute(sql)
    marks = ", ".join(["?"] * 9)
    insert = (
        f"INSERT INTO {TIMELINE_TABLE} (gateway_id, session_id, boot_id, seq, kind, at, "
        f"received_at, run_id, data) VALUES ({marks})"
    )
    started = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        db.execute("BEGIN IMMEDIATE")
        db.executemany(insert, rows[i : i + BATCH])
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return len(rows) / elapsed


def measure(events: Sequence[RegistryEvent], workdir: Path) -> dict[str, Any]:
    """Ingest and raw runs take turns, so both sides see the same machine; medians of each."""
    rows = timeline_rows(events)
    ingest: list[float] = []
    raw: list[float] = []
    ddl: list[str] = []
    for i in range(RUNS):
        ingest.append(run_ingest(events, workdir / f"ingest-{i}.sqlite3"))
        ddl = ddl or _timeline_ddl(workdir / "ingest-0.sqlite3")
        raw.append(run_raw(rows, workdir / f"raw-{i}.sqlite3", ddl))
        print(
            f"ingest_bench run {i + 1}: ingest {ingest[-1]:.0f}/s, raw {raw[-1]:.0f}/s",
            file=sys.stderr,
            flush=True,
        )
    value, baseline = statistics.median(ingest), statistics.median(raw)
    return {
        "metric": "ingest_events_per_s",
        "value": round(value),
        "unit": "events/s",
        "baseline": round(baseline),
        "ratio": round(value / baseline, 3),
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="runboard-ingest-bench-") as tmp:
        workdir = Path(tmp)
        _setup_django(workdir)
        events = recorded_stream()
        print(json.dumps(measure(events, workdir)), flush=True)


if __name__ == "__main__":
    main()
