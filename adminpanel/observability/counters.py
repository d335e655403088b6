"""Durable counters for /metrics: one atomic upsert per change, inside the caller's transaction.

Counting rows at scrape time would go backwards once old rows are pruned, and
a counter in process memory would be one worker's view; a row per
``(name, labels)`` incremented with ``INSERT … ON CONFLICT DO UPDATE`` is
neither, and two processes counting at once never lose an increment.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

from django.db import connection

from adminpanel import prepared_sql
from adminpanel.models import MetricCounter
from gateway_bridge.events import DispatchSkipped, FollowupDrainFailed, RegistryEvent

# The last batch's lag is kept in microseconds: the column is an integer.
LAG_NAME = "ingest_lag_us"


def label_key(labels: dict[str, str]) -> str:
    """Labels as the canonical JSON stored in ``MetricCounter.labels``."""
    return json.dumps(labels, sort_keys=True, separators=(",", ":"))


def _upsert(rows: Sequence[tuple[str, dict[str, str], int]], gauges: frozenset[str]) -> None:
    """One statement for all ``rows`` (name, labels, value): a gauge's value replaces
    what is stored, a counter's is added to it."""
    table = connection.ops.quote_name(MetricCounter._meta.db_table)
    names = {name for name, _, _ in rows}
    added = f"{table}.value + excluded.value"
    assign_params: list[str] = []
    if not names & gauges:
        assign = added
    elif names <= gauges:
        assign = "excluded.value"
    else:
        marks = ", ".join(["%s"] * len(gauges))
        assign = f"CASE WHEN excluded.name IN ({marks}) THEN excluded.value ELSE {added} END"
        assign_params = sorted(gauges)
    values = ", ".join(["(%s, %s, %s)"] * len(rows))
    # Same syntax on SQLite >= 3.24 and PostgreSQL; the unique constraint is the arbiter.
    sql = (
        f"INSERT INTO {table} (name, labels, value) VALUES {values} "
        f"ON CONFLICT (name, labels) DO UPDATE SET value = {assign}"
    )
    params = [p for name, labels, value in rows for p in (name, label_key(labels), value)]
    with prepared_sql.cursor() as cursor:  # a batch's few shapes: prepared on PostgreSQL
        cursor.execute(sql, [*params, *assign_params])


def count(name: str, amount: int = 1, **labels: str) -> None:
    """Add ``amount`` to the counter ``name`` with these labels (created at 0 on first use)."""
    if amount:
        _upsert([(name, labels, amount)], frozenset())


def set_value(name: str, value: int, **labels: str) -> None:
    """Remember the last value of ``name`` (a gauge that outlives the process that set it)."""
    _upsert([(name, labels, value)], frozenset([name]))


def skip_reason(event: DispatchSkipped | FollowupDrainFailed) -> str:
    """A skip's reason label; a drain failure's error text would be a label per message."""
    return event.reason if isinstance(event, DispatchSkipped) else "drain_failed"


def record_batch(gateway: str, events: Sequence[RegistryEvent], committed: float) -> None:
    """Ingest applied ``events`` of one gateway: count them and their skips, keep the lag.

    The lag is the batch's oldest event time (the gateway's clock) to
    ``committed`` (ours): how long the slowest event took to reach the store.
    """
    if not events:
        return
    rows = [("events_ingested", {"gateway": gateway}, len(events))]
    skipped = Counter(
        skip_reason(e) for e in events if isinstance(e, DispatchSkipped | FollowupDrainFailed)
    )
    rows += [("skips", {"gateway": gateway, "reason": r}, n) for r, n in sorted(skipped.items())]
    lag = max(0.0, committed - min(e.at for e in events))
    rows.append((LAG_NAME, {"gateway": gateway}, round(lag * 1_000_000)))
    # One round trip per batch, not one per counter: it runs in ingest's transaction.
    _upsert(rows, frozenset([LAG_NAME]))


def values(name: str) -> list[tuple[dict[str, str], int]]:
    """Every labelled value of ``name``."""
    rows = MetricCounter.objects.filter(name=name).values_list("labels", "value")
    return [(json.loads(labels), value) for labels, value in rows]


def all_values() -> dict[str, list[tuple[dict[str, str], int]]]:
    """Every stored value, by name: one query per scrape."""
    out: dict[str, list[tuple[dict[str, str], int]]] = {}
    for name, labels, value in MetricCounter.objects.values_list("name", "labels", "value"):
        out.setdefault(name, []).append((json.loads(labels), value))
    return out
