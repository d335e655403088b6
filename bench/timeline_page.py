"""``python -m bench.sessions_page --timeline-rows N``: the page and ingest with a big timeline.

Prints ``sessions_page_ms_1m_timeline`` and ``ingest_events_per_s_1m_timeline``
(the names keep "1m" whatever N is; ``timeline_rows`` says how many). The
same-run baseline is the same store before the timeline rows were loaded:
the same 100,000 sessions, the same page requests, an ingest stream of the
same shape (another gateway, so both streams start clean).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.bulk_store import load_timeline
from bench.streams import generate_events
from bench.support import ingest_batches, percentile, postgres, run_product, setup_django_on

SORTS = {"busy": "/?sort=age", "quiet": "/?sort=key"}  # locked rows first; idle rows first
REQUESTS = 40
INGEST_EVENTS = 40_000
BATCH = 2000


def log(message: str) -> None:
    print(f"sessions_page: {message}", file=sys.stderr, flush=True)


def measure_pages() -> dict[str, list[float]]:
    from bench.sessions_page import page_getter, time_requests

    samples: dict[str, list[float]] = {}
    for name, path in SORTS.items():
        samples[name] = time_requests(page_getter(path), REQUESTS)
    return samples


def measure_ingest(gateway: str) -> float:
    events = generate_events(INGEST_EVENTS, gateway=gateway, sessions=1000, seed=7)
    return len(events) / run_product(ingest_batches(events, BATCH))


def page_figures(samples: dict[str, list[float]]) -> dict[str, float]:
    every = [v for values in samples.values() for v in values]
    figures = {"p50": percentile(every, 50), "p95": percentile(every, 95)}
    for name, values in samples.items():
        figures[f"{name}_p50"] = percentile(values, 50)
        figures[f"{name}_p95"] = percentile(values, 95)
    return {k: round(v, 2) for k, v in figures.items()}


def timeline_count() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM adminpanel_timelineevent")
        return int(cursor.fetchone()[0])


def timeline_main(rows: int, on_postgres: bool) -> None:
    from bench.sessions_page import NOW, SESSIONS, _gateways, insert_sessions

    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="runboard-bench-"))
        url = stack.enter_context(postgres("runboard_sessions_page_bench")) if on_postgres else ""
        setup_django_on(Path(tmp), url)
        from django.db import connection

        gateways = _gateways()
        for chunk in range(0, SESSIONS, 20_000):
            insert_sessions(chunk, min(SESSIONS, chunk + 20_000), gateways)
        empty_pages = measure_pages()
        empty_ingest = measure_ingest("bench-empty")
        log(f"empty timeline: pages {page_figures(empty_pages)}, ingest {empty_ingest:.0f}/s")
        before = timeline_count()
        started = time.perf_counter()
        stored = load_timeline(rows, NOW)
        loaded = stored - before
        fill_s = time.perf_counter() - started
        log(f"{loaded} timeline rows loaded in {fill_s:.1f} s ({stored} stored)")
        full_pages = measure_pages()
        full_ingest = measure_ingest("bench-full")
        log(f"{stored} rows: pages {page_figures(full_pages)}, ingest {full_ingest:.0f}/s")
        backend = connection.vendor
    full, empty = page_figures(full_pages), page_figures(empty_pages)
    common: dict[str, Any] = {
        "timeline_rows": loaded, "timeline_rows_stored": stored, "sessions": SESSIONS,
        "backend": backend,
    }  # fmt: skip
    print(json.dumps({
        "metric": "sessions_page_ms_1m_timeline", "value": full["p95"], "unit": "ms (p95)",
        **{k: v for k, v in full.items() if k != "p95"},
        "requests": sum(len(v) for v in full_pages.values()), "sorts": SORTS,
        "baseline": empty["p95"],
        "baseline_metric": "the same pages, same sessions, before the timeline rows were loaded",
        **{f"baseline_{k}": v for k, v in empty.items() if k != "p95"},
        "ratio": round(full["p95"] / empty["p95"], 2), **common,
        "fill_s": round(fill_s, 1),
    }), flush=True)  # fmt: skip
    print(json.dumps({
        "metric": "ingest_events_per_s_1m_timeline", "value": round(full_ingest),
        "unit": "events/s", "baseline": round(empty_ingest),
        "baseline_metric": "the same ingest (a new gateway's 40,000-event stream) before the "
        "timeline rows were loaded",
        "ratio": round(full_ingest / empty_ingest, 3), "events": INGEST_EVENTS, "runs": 1,
        **common,
    }), flush=True)  # fmt: skip
