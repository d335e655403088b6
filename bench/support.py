"""What benchmarks share: scratch Django set-ups (SQLite, PostgreSQL), percentiles, ingest runs."""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.raw_ingest import RawFlag, table_counts
from gateway_bridge.events import RegistryEvent


def exit_on_sigterm() -> None:
    """SIGTERM (``timeout``, a CI's cancel) ends the bench as Ctrl-C would: the
    ``finally`` blocks run and stop the servers and children it started, which
    run in sessions of their own and would otherwise load the machine on."""

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def setup_django(workdir: Path) -> None:
    """Point Django at a scratch SQLite file under ``workdir`` (WAL), set it up and migrate."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "runboard.settings"
    os.environ["RUNBOARD_DATABASE_URL"] = ""
    os.environ["RUNBOARD_VAR_DIR"] = str(workdir)
    os.environ.setdefault("RUNBOARD_LOG_LEVEL", "WARNING")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0-100) of ``values``."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# --- Ingest benchmarks: batches, the product's side, PostgreSQL --------------------------


def ingest_batches(events: Sequence[RegistryEvent], size: int) -> list[tuple[list[Any], float]]:
    """The stream cut in batches, each with the clock ingest sees (its last event's time)."""
    return [
        (list(events[i : i + size]), events[min(len(events), i + size) - 1].at)
        for i in range(0, len(events), size)
    ]


def run_product(batches: Sequence[tuple[Sequence[RegistryEvent], float]]) -> float:
    """Seconds ``Ingestor.apply`` takes for every batch on Django's current database.

    The clock follows the stream, so flag rules see the lock ages a live run would.
    """
    from adminpanel.ingest import Ingestor

    now = [batches[0][1]]
    ingestor = Ingestor(clock=lambda: now[0])
    started = time.perf_counter()
    for events, at in batches:
        now[0] = at
        ingestor.apply(events)
    return time.perf_counter() - started


def product_flags(batches: Sequence[tuple[Sequence[RegistryEvent], float]]) -> list[RawFlag]:
    """The flag rows the product stored, keyed by the batch that raised (and cleared) each."""
    from adminpanel.models import Flag

    batch_at = {round(at, 3): i for i, (_, at) in enumerate(batches)}
    found = Flag.objects.values_list(
        "session__session_key", "code", "severity", "why", "since", "details", "raised_at",
        "cleared_at",
    ).order_by("pk")  # fmt: skip
    return [
        RawFlag(key, code, severity, why, since.timestamp(), details,
                batch_at[round(raised.timestamp(), 3)],
                None if cleared is None else batch_at[round(cleared.timestamp(), 3)])
        for key, code, severity, why, since, details, raised, cleared in found
    ]  # fmt: skip


def count_rows() -> dict[str, int]:
    """Rows per table the ingest writers fill, on Django's current database."""
    from django.db import connection

    return table_counts(connection)


def setup_django_on(workdir: Path, database_url: str) -> None:
    """Django on ``database_url`` (a scratch SQLite file under ``workdir`` when empty); migrated."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "runboard.settings"
    os.environ["RUNBOARD_DATABASE_URL"] = database_url
    os.environ["RUNBOARD_VAR_DIR"] = str(workdir)
    os.environ.setdefault("RUNBOARD_LOG_LEVEL", "WARNING")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


@contextmanager
def postgres(name: str) -> Iterator[str]:
    """A scratch PostgreSQL database ``name``; yields its URL and drops it after.

    On the server ``RUNBOARD_DATABASE_URL`` names when it is a PostgreSQL URL, else
    on a PostgreSQL 15 started for the run in a temporary folder (0755: the
    ``postgres`` user must reach its data folder inside) and stopped after.
    """
    url = os.environ.get("RUNBOARD_DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        with scratch_database(url, name) as scratch:
            yield scratch
        return
    from stack.servers import PostgresServer

    folder = Path(tempfile.mkdtemp(prefix="runboard-bench-pg-"))
    folder.chmod(0o755)
    server = PostgresServer(folder / "postgres")
    try:
        server.start()
        with scratch_database(server.url, name) as scratch:
            yield scratch
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def scratch_database(url: str, name: str) -> Iterator[str]:
    import psycopg

    parts = urlsplit(url)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(parts._replace(path=f"/{name}"))
        finally:
            close_django()
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def close_django() -> None:
    """Close Django's connections (and its pool), if Django is set up."""
    if "django.db" not in sys.modules:
        return
    from django.db import connection, connections

    connections.close_all()
    if hasattr(connection, "close_pool"):
        connection.close_pool()


def median_ratio(values: Sequence[float], baselines: Sequence[float]) -> float:
    """Ratios paired per run, then their median."""
    return statistics.median(v / b for v, b in zip(values, baselines, strict=True))
