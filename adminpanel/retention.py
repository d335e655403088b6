"""Retention: old timeline events, skips and cleared flags go; the audit log never does.

The store would otherwise grow without bound. Rows go in small batches, each
its own short transaction (select a batch of primary keys by an indexed time
column, oldest first, then delete those keys): on SQLite ingest never waits
behind one long delete, on PostgreSQL no transaction grows with the table.
Nothing has a foreign key to these three tables, so deleting them leaves every
other row whole; active flags and audit entries are never candidates. Figures and the
reasoning behind the pause on SQLite: docs/notes/retention.md.

Users' message texts are personal data kept only so an operator can requeue a
lost message (``Waiter.text``, ``DispatchSkip.text``): ``drop_message_texts``
blanks a text once a requeue handed its message back to the gateway, and every
text older than ``RUNBOARD_MESSAGE_TEXT_DAYS``, long before the rows themselves
go. The short preview the pages show stays with its row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.db import connection, models, transaction
from django.db.models import Q

from adminpanel.held_messages import requeue_key, requeued_keys
from adminpanel.models import AuditEntry, DispatchSkip, Flag, Session, TimelineEvent, Waiter

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


# --- message texts ----------------------------------------------------------------

# Where texts are kept for requeue, and each row's time column.
TextHolder = type[Waiter] | type[DispatchSkip]
TEXT_HOLDERS: tuple[tuple[TextHolder, str], ...] = (
    (Waiter, "since"),
    (DispatchSkip, "at"),
)
REQUEUE_ACTIONS = ("requeue", "clear_and_requeue")


@dataclass(frozen=True)
class TextsDropped:
    """Message texts blanked: handed back by a requeue, or past their days."""

    cutoff: datetime
    requeued: int = 0
    aged: int = 0
    dry_run: bool = False

    @property
    def dropped(self) -> int:
        return self.requeued + self.aged


def blank_texts(model: TextHolder, keys: list[int]) -> int:
    if not keys:
        return 0
    with transaction.atomic():
        return model._default_manager.filter(pk__in=keys).exclude(text="").update(text="")


def aged_texts(model: TextHolder, column: str, cutoff: datetime) -> models.QuerySet[Any]:
    return model._default_manager.filter(**{f"{column}__lt": cutoff}).exclude(text="")


def requeued_rows(session: Session) -> list[tuple[TextHolder, list[int]]]:
    """Rows of ``session`` whose message a requeue started (or found delivered), text kept.

    Matched by the idempotency key ``held_messages.held_messages`` gave them, and then
    by message id: a message seen as a waiter and as a skip is requeued once.
    """
    done = requeued_keys(session)
    if not done:
        return []
    gateway = session.gateway.name
    waiters = list(
        Waiter.objects.filter(session=session)
        .exclude(text="")
        .values_list("pk", "boot_id", "waiter_id", "message_id")
    )
    skips = list(
        DispatchSkip.objects.filter(session=session)
        .exclude(text="")
        .values_list("pk", "boot_id", "seq", "message_id", "kind")
    )
    waiter_hits = {
        pk for pk, boot, waiter_id, _ in waiters
        if requeue_key(gateway, "waiter", f"{boot}/{waiter_id}") in done
    }  # fmt: skip
    skip_hits = {
        pk for pk, boot, seq, message_id, kind in skips
        if kind == "skip" and requeue_key(gateway, "skip", message_id or f"{boot}/{seq}") in done
    }  # fmt: skip
    delivered = {m for pk, _, _, m in waiters if pk in waiter_hits and m}
    delivered |= {m for pk, _, _, m, _ in skips if pk in skip_hits and m}
    return [
        (Waiter, [pk for pk, _, _, m in waiters if pk in waiter_hits or m in delivered]),
        (DispatchSkip, [pk for pk, _, _, m, _ in skips if pk in skip_hits or m in delivered]),
    ]


def sessions_requeued_since(cutoff: datetime) -> list[Session]:
    """Sessions a requeue touched since ``cutoff`` (older requeues' texts are past their days)."""
    pks = AuditEntry.objects.filter(kind="outcome", action__in=REQUEUE_ACTIONS, at__gte=cutoff)
    keys = {pk for pk in pks.values_list("session_pk", flat=True) if pk is not None}
    return list(Session.objects.filter(pk__in=keys).select_related("gateway"))


def drop_message_texts(
    now: datetime,
    days: int,
    batch: int,
    *,
    dry_run: bool = False,
    pause_s: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> TextsDropped:
    """Blank the texts of requeued messages, then every text older than ``days``."""
    if days < 1 or batch < 1:
        raise ValueError(f"days and batch must be at least 1, not {days} and {batch}")
    cutoff = cutoff_for(now, days)
    requeued = aged = 0
    for session in sessions_requeued_since(cutoff):
        for model, keys in requeued_rows(session):
            requeued += len(keys) if dry_run else blank_texts(model, keys)
    for model, column in TEXT_HOLDERS:
        rows = aged_texts(model, column, cutoff)
        if dry_run:
            aged += rows.count()
            continue
        while keys := list(rows.order_by(column).values_list("pk", flat=True)[:batch]):
            aged += blank_texts(model, keys)
            if len(keys) < batch:
                break
            if pause_s:
                sleep(pause_s)
    result = TextsDropped(cutoff, requeued, aged, dry_run)
    if not dry_run:
        log.info("message_texts_dropped", cutoff=cutoff.isoformat(), requeued=requeued, aged=aged)
    return result
