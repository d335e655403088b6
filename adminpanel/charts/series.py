"""Per-gateway, per-bucket numbers from the store: one aggregate query per measure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, Min, Q, QuerySet
from django.db.models.functions import TruncMinute

from adminpanel.models import AuditEntry, DispatchSkip, Flag, Run, TimelineEvent


@dataclass(frozen=True, slots=True)
class Window:
    name: str  # 1h | 1d
    label: str
    buckets: int
    bucket_s: int

    @property
    def span(self) -> timedelta:
        return timedelta(seconds=self.buckets * self.bucket_s)


WINDOWS = {
    "1h": Window("1h", "last hour", 60, 60),
    "1d": Window("1d", "last day", 96, 900),
}
RESULTS = AuditEntry.RESULTS


@dataclass(frozen=True, slots=True)
class Span:
    """The buckets of one window ending with the bucket that holds ``now``."""

    window: Window
    start: datetime
    now: datetime

    @classmethod
    def ending(cls, window: Window, now: datetime) -> Span:
        step = window.bucket_s
        epoch = int(now.timestamp())
        end = datetime.fromtimestamp(epoch - epoch % step + step, UTC)
        return cls(window, end - window.span, now)

    @property
    def end(self) -> datetime:
        return self.start + self.window.span

    def starts(self) -> list[datetime]:
        step = timedelta(seconds=self.window.bucket_s)
        return [self.start + i * step for i in range(self.window.buckets)]

    def index(self, at: datetime) -> int | None:
        i = int((at - self.start).total_seconds() // self.window.bucket_s)
        return i if 0 <= i < self.window.buckets else None

    def seconds(self) -> list[float]:
        """Each bucket's length so far: the current one is still filling."""
        full = float(self.window.bucket_s)
        last = (self.now - self.starts()[-1]).total_seconds()
        return [full] * (self.window.buckets - 1) + [min(full, max(1.0, last))]

    def sample_times(self) -> list[datetime]:
        """Where a level (locks held) is read: each bucket's end, and ``now`` for the last."""
        step = timedelta(seconds=self.window.bucket_s)
        return [min(t + step, self.now) for t in self.starts()]


Counts = dict[int, list[float]]  # gateway pk → one number per bucket


def bucket_counts(
    qs: QuerySet[Any], field: str, span: Span, gateway: str, by: str | None = None
) -> dict[tuple[Any, str], list[float]]:
    """Rows per (gateway, ``by``) and bucket; grouped by minute in SQL, into buckets here."""
    rows = (
        qs.filter(**{f"{field}__gte": span.start, f"{field}__lt": span.end})
        .annotate(minute=TruncMinute(field, tzinfo=UTC))
        .values(gateway, "minute", *([by] if by else []))
        .annotate(n=Count("pk"))
        .order_by()
    )
    out: dict[tuple[Any, str], list[float]] = defaultdict(lambda: [0.0] * span.window.buckets)
    for row in rows:
        i = span.index(_aware(row["minute"]))
        if i is not None:
            out[(row[gateway], row[by] if by else "")][i] += row["n"]
    return out


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _per_gateway(counts: dict[tuple[Any, str], list[float]]) -> Counts:
    return {pk: values for (pk, _), values in counts.items()}


def rates(counts: list[float], span: Span, per_s: float) -> list[float]:
    """Counts per ``per_s`` seconds of each bucket (of the current one so far)."""
    return [v * per_s / s for v, s in zip(counts, span.seconds(), strict=True)]


def flags_raised(span: Span) -> Counts:
    return _per_gateway(bucket_counts(Flag.objects.all(), "raised_at", span, "session__gateway_id"))


def flags_cleared(span: Span) -> Counts:
    return _per_gateway(
        bucket_counts(Flag.objects.all(), "cleared_at", span, "session__gateway_id")
    )


def skips(span: Span) -> Counts:
    return _per_gateway(bucket_counts(DispatchSkip.objects.all(), "at", span, "gateway_id"))


def events(span: Span) -> Counts:
    return _per_gateway(bucket_counts(TimelineEvent.objects.all(), "at", span, "gateway_id"))


def actions_by_result(span: Span, names: dict[str, int]) -> dict[int, dict[str, list[float]]]:
    """Outcomes of actions per result; audit rows name their gateway, they hold no key."""
    counts = bucket_counts(
        AuditEntry.objects.filter(kind="outcome"), "at", span, "gateway", by="result"
    )
    out: dict[int, dict[str, list[float]]] = defaultdict(dict)
    for (name, result), values in counts.items():
        if str(name) in names:
            out[names[str(name)]][result] = values
    return out


def locks(span: Span, gateway_pks: Iterable[int]) -> tuple[Counts, Counts]:
    """Locks held, and the oldest one's age in seconds, at each bucket's end.

    A run holds its lock from ``started_at`` until ``released_at``. One query
    over the runs that overlap the window, a count and a minimum per sample.
    """
    samples = span.sample_times()
    aggregates: dict[str, Any] = {}
    for i, t in enumerate(samples):
        holds = Q(started_at__lte=t) & (Q(released_at__isnull=True) | Q(released_at__gt=t))
        aggregates[f"n{i}"] = Count("pk", filter=holds)
        aggregates[f"o{i}"] = Min("started_at", filter=holds)
    overlapping = Run.objects.filter(
        gateway_id__in=list(gateway_pks), started_at__lt=span.now
    ).filter(Q(released_at__isnull=True) | Q(released_at__gte=span.start))
    rows: list[dict[str, Any]] = list(
        overlapping.values("gateway_id").annotate(**aggregates).order_by()  # type: ignore[arg-type]
    )
    held: Counts = {}
    oldest: Counts = {}
    for row in rows:
        pk = row["gateway_id"]
        held[pk] = [float(row[f"n{i}"]) for i in range(len(samples))]
        oldest[pk] = [
            (t - _aware(row[f"o{i}"])).total_seconds() if row[f"o{i}"] else 0.0
            for i, t in enumerate(samples)
        ]
    return held, oldest
