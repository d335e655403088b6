"""sessions_page_ms: server time for the first page of sessions, oldest lock first.

A scratch SQLite database (the embedded default, WAL mode) holds 100,000
sessions on three gateways, bulk-inserted with raw SQL: 2 % hold a lock
(acquired at spread-out times), a tenth of those carry an active flag with
its why. A logged-in ``django.test.Client`` requests ``/`` (the default sort,
lock age) through the whole middleware stack and template rendering;
``sessions_page_ms`` is the p95 over ``REQUESTS`` requests after a warm-up.

Baselines, measured in the same run on the same database file: the same page
while the store held only ``SMALL`` sessions (how much the 100,000 cost), and
the page's own row query as raw SQL (how much of the page is the database).
Goal: p95 <= 50 ms. Also reported: ``key_search_ms_p95``, a key search that
matches nothing (a substring has no index: the worst case scans every row).

``--timeline-rows N`` (``python -m bench sessions_page_1m``: 1,000,000): the
store the retention work is about. With the 100,000 sessions stored, the page
(a busy sort, oldest lock first, and a quiet one, by key) and ingest (a
generated 40,000-event stream of a new gateway through ``Ingestor.apply``)
are measured on the empty timeline, then N timeline rows over those sessions
are bulk-loaded (``bench.bulk_store``) and the same is measured again; the
empty-timeline figures are the same-run baseline. ``--postgres``: on
PostgreSQL (``RUNBOARD_DATABASE_URL``'s server or one started for the run).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.support import percentile, setup_django

SESSIONS = 100_000
SMALL = 10
LOCKED_SHARE = 0.02
FLAGGED_SHARE_OF_LOCKED = 0.1
REQUESTS = 60
SEARCHES = 20
WARMUP = 5
SEED = 4
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _text(dt: datetime | None) -> str | None:
    """A datetime as Django's SQLite backend stores it."""
    return None if dt is None else dt.strftime("%Y-%m-%d %H:%M:%S.%f")


def _gateways() -> list[int]:
    from adminpanel.models import Gateway

    return [
        Gateway.objects.create(name=f"gw-{n}", status="connected", mode="plugin").pk
        for n in range(3)
    ]


def insert_sessions(start: int, stop: int, gateways: list[int]) -> None:
    """Sessions ``start..stop-1`` (and their flags) in a few executemany calls."""
    from django.db import connection, transaction

    rng = random.Random(SEED + start)
    sessions: list[tuple[Any, ...]] = []
    flags: list[tuple[int, datetime | None]] = []
    for n in range(start, stop):
        locked = rng.random() < LOCKED_SHARE or n < 3
        at = NOW - timedelta(seconds=rng.uniform(1, 6 * 3600)) if locked else None
        flagged = locked and (rng.random() < FLAGGED_SHARE_OF_LOCKED or n == 0)
        agent, channel = rng.choice(("main", "ops", "sales")), rng.choice(("telegram", "slack"))
        sessions.append(
            (
                gateways[n % len(gateways)],
                f"agent:{agent}:{channel}:direct:{n}",
                agent,
                channel,
                "",
                "running" if locked else "done",
                None,
                locked,
                f"run-{n}" if locked else "",
                "running" if locked else "",
                "",
                "",
                _text(at),
                _text(at),
                None,
                rng.randrange(3) if locked else 0,
                1 if flagged else 0,
                "critical" if flagged else "",
                _text(NOW),
                "",  # auto_policy: no recovery countdown
            )
        )
        if flagged:
            flags.append((n, at))
    columns = (
        "gateway_id, session_key, agent, channel, session_id, store_status, store_status_at, "
        "locked, run_id, phase, result, result_code, lock_acquired_at, last_progress_at, "
        "ended_at, waiter_count, flag_count, worst_severity, updated_at, auto_policy"
    )
    marks = ", ".join(["%s"] * 20)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO adminpanel_session ({columns}) VALUES ({marks})", sessions)
        since = dict(flags)
        cursor.execute("SELECT id, session_key FROM adminpanel_session WHERE flag_count > 0")
        numbered = ((pk, int(key.rsplit(":", 1)[1])) for pk, key in cursor.fetchall())
        why = "No progress for a long time while 2 messages wait."
        rows = [
            (pk, "no_progress", "critical", why, _text(since[n]), "{}", _text(NOW))
            for pk, n in numbered
            if n in since
        ]
        cursor.executemany(
            "INSERT INTO adminpanel_flag (session_id, code, severity, why, since, details, "
            "raised_at, cleared_at) VALUES (%s, %s, %s, %s, %s, %s, %s, NULL)",
            rows,
        )


def time_requests(get: Callable[[], Any], count: int) -> list[float]:
    for _ in range(WARMUP):
        get()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        get()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def page_getter(path: str = "/") -> Callable[[], Any]:
    from django.contrib.auth.models import User
    from django.test import Client

    from tests.support.users import make_user

    user = User.objects.filter(username="bench").first() or make_user("bench", role="viewer")
    client = Client()
    client.force_login(user)

    def get() -> Any:
        response = client.get(path)
        assert response.status_code == 200, response.status_code
        return response

    return get


def raw_query_getter() -> Callable[[], Any]:
    """The first page's row query alone, as the view sends it (the first segment)."""
    from django.db import connection

    from adminpanel.session_rows import SORT_SEGMENTS, filtered_sessions

    segment = SORT_SEGMENTS["age"][0]
    query = filtered_sessions({}).filter(segment.where).order_by(*segment.order_by())[:51]
    sql, params = query.query.sql_with_params()

    def run() -> Any:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    return run


def main() -> None:
    args = parse_args(sys.argv[1:])
    if args.timeline_rows:
        from bench.timeline_page import timeline_main

        timeline_main(args.timeline_rows, args.postgres)
        return
    with tempfile.TemporaryDirectory(prefix="runboard-bench-") as workdir:
        setup_django(Path(workdir))
        gateways = _gateways()
        get = page_getter()
        insert_sessions(0, SMALL, gateways)
        small = time_requests(get, REQUESTS)
        started = time.perf_counter()
        for chunk in range(SMALL, SESSIONS, 20_000):
            insert_sessions(chunk, min(SESSIONS, chunk + 20_000), gateways)
        fill_s = time.perf_counter() - started
        rows = get().content.decode().count('<tr id="session-')
        large = time_requests(get, REQUESTS)
        raw = time_requests(raw_query_getter(), REQUESTS)
        # A key search that matches nothing: no index helps a substring, so this is the
        # worst case, a scan of every session (reported, not the metric).
        search = time_requests(page_getter(f"/?q=direct:{SESSIONS // 2}x"), SEARCHES)
        from django.db import connection

        connection.close()
    p95, base = percentile(large, 95), percentile(small, 95)
    print(
        json.dumps(
            {
                "metric": "sessions_page_ms",
                "value": round(p95, 2),
                "unit": "ms (p95)",
                "p50": round(percentile(large, 50), 2),
                "requests": len(large),
                "sessions": SESSIONS,
                "rows_shown": rows,
                "baseline": round(base, 2),
                "baseline_metric": f"the same page with {SMALL} sessions stored, p95",
                "ratio": round(p95 / base, 2) if base else None,
                "raw_sql_ms_p95": round(percentile(raw, 95), 3),
                "key_search_ms_p95": round(percentile(search, 95), 2),
                "fill_s": round(fill_s, 2),
                "goal": "p95 <= 50",
            }
        )
    )
    sys.stdout.flush()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.sessions_page")
    parser.add_argument("--timeline-rows", type=int, default=0,
                        help="bulk-load this many timeline rows and measure page and ingest "
                        "against the empty-timeline store")  # fmt: skip
    parser.add_argument(
        "--postgres", action="store_true", help="on PostgreSQL (with --timeline-rows)"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()
