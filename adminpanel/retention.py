"""Retention: old timeline events, skips and cleared flags go; the audit log never does.

The store would otherwise grow without bound. Rows go in small batches, each
its own short transaction (select a batch of primary keys by an indexed time
column, oldest first, then delete those keys): on SQLite ingest never waits
behind one long delete, on PostgreSQL no transaction grows with the table.
Nothing has a foreign key to these three tables, so deleting them leaves every
other row whole; active flags and audit entries are never candidates. Figures and the
reasoning behind the pause on SQLite: docs/notes/retention.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from django.db import connection, models, transaction
from django.db.models import Q

from adminpanel.models import DispatchSkip, Flag, TimelineEvent

log = structlog.get_logger(__name__)

# SQLite has one writer at a time, and a writer that waits polls every 100 ms at
# most (its busy handler): a pause this long between batches lets ingest in.
SQLITE_PAUSE_S = 0.1


@dataclass(frozen=True)
class Target:
    """One table retention prunes: which rows are old, by which indexed column."""

    label: str
    model: type[models.Model]
    column: str  # indexed time column; rows with it before the cutoff go
    keep: Q  # rows never pruned whatever their age

    def old(self, cutoff: datetime) -> models.QuerySet[models.Model]:
        rows = self.model._default_manager.filter(**{f"{self.column}__lt": cutoff})
        return rows.exclude(self.keep) if self.keep else rows


TARGETS = (
    Target("timeline events", TimelineEvent, "received_at", Q()),
    Target("dispatch skips", DispatchSkip, "at", Q()),
    # cleared_at < cutoff already excludes active flags (NULL); said twice on purpose.
    Target("cleared flags", Flag, "cleared_at", Q(cleared_at__isnull=True)),
)


@dataclass(frozen=True)
class Pruned:
    """What one table lost: rows deleted, in how many transactions."""

    deleted: int = 0
    batches: int = 0


@dataclass(frozen=True)
class PruneResult:
    cutoff: datetime
    tables: dict[str, Pruned]  # by Target.label, in TARGETS order
    longest_batch_ms: float = 0.0  # the longest single transaction: the longest lock held
    dry_run: bool = False

    @property
    def deleted(self) -> int:
        return sum(p.deleted for p in self.tables.values())


def cutoff_for(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)


def default_pause_s() -> float:
    return SQLITE_PAUSE_S if connection.vendor == "sqlite" else 0.0


def delete_batch(
    target: Target, cutoff: datetime, batch: int, after: datetime | None = None
) -> tuple[int, datetime | None]:
    """Delete up to ``batch`` of ``target``'s oldest rows before ``cutoff``, in one transaction.

    ``after``: the newest time the previous batch deleted. Starting the index scan
    there skips the entries of rows already deleted, which PostgreSQL keeps in the
    index until vacuum: without it each batch would walk every earlier batch's.
    Returns the rows deleted and the newest time among them.
    """
    rows = target.old(cutoff)
    if after is not None:
        rows = rows.filter(**{f"{target.column}__gte": after})
    with transaction.atomic():
        found = list(rows.order_by(target.column).values_list("pk", target.column)[:batch])
        if not found:
            return 0, None
        # No cascades or signals for these models: Django issues one DELETE … WHERE id IN.
        keys = [pk for pk, _ in found]
        deleted, _ = target.model._default_manager.filter(pk__in=keys).delete()
        return deleted, found[-1][1]


def prune(
    now: datetime,
    days: int,
    batch: int,
    *,
    pause_s: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> PruneResult:
    """Delete every prunable row older than ``days`` before ``now``, ``batch`` rows at a time."""
    if days < 1 or batch < 1:
        raise ValueError(f"days and batch must be at least 1, not {days} and {batch}")
    cutoff = cutoff_for(now, days)
    tables: dict[str, Pruned] = {}
    longest = 0.0
    for target in TARGETS:
        deleted = batches = 0
        after: datetime | None = None
        while True:
            started = time.perf_counter()
            count, after = delete_batch(target, cutoff, batch, after)
            if count == 0:
                break
            longest = max(longest, (time.perf_counter() - started) * 1000)
            deleted, batches = deleted + count, batches + 1
            if count < batch:
                break
            if pause_s:
                sleep(pause_s)
        tables[target.label] = Pruned(deleted, batches)
    result = PruneResult(cutoff, tables, round(longest, 1))
    log.info(
        "retention_pruned",
        cutoff=cutoff.isoformat(),
        longest_batch_ms=result.longest_batch_ms,
        **{t.label.replace(" ", "_"): tables[t.label].deleted for t in TARGETS},
    )
    return result


def prunable(now: datetime, days: int, batch: int) -> PruneResult:
    """What ``prune`` would delete now, deleting nothing (``--dry-run``)."""
    cutoff = cutoff_for(now, days)
    tables = {}
    for target in TARGETS:
        count = target.old(cutoff).count()
        tables[target.label] = Pruned(count, -(-count // batch))
    return PruneResult(cutoff, tables, dry_run=True)
