"""Enqueueing notices: rows only, inside the caller's transaction; sending is the dispatcher's.

``flags_changed`` is ingest's one hook (``adminpanel.ingest.flags``): it costs
nothing when no flag was raised or cleared, and a few queries when some were.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Q

from adminpanel.models import Flag
from adminpanel.notify.channels import enabled_channels
from adminpanel.notify.models import Delivery


def flags_changed(raised: Sequence[tuple[int, str]], cleared: Sequence[int], now: float) -> None:
    """Queue a notice per channel for flags just raised ((session pk, code)) or cleared (pks)."""
    if not raised and not cleared:
        return
    at = datetime.fromtimestamp(now, UTC)
    if raised:
        _queue_raised(set(raised), at)
    if cleared:
        _queue_cleared(cleared, at)


def _queue_raised(raised: set[tuple[int, str]], at: datetime) -> None:
    channels = enabled_channels()
    if not channels:
        return
    found = Flag.objects.filter(
        session_id__in={pk for pk, _ in raised},
        code__in={code for _, code in raised},
        cleared_at__isnull=True,
    ).values_list("pk", "session_id", "code", "severity", "session__gateway_id")
    rows = [
        _row(flag_pk, c.pk, c.key, c.name, "raised", 0, at)
        for flag_pk, session_pk, code, severity, gateway_pk in found
        if (session_pk, code) in raised
        for c in channels
        if c.wants(gateway_pk, severity)
    ]
    Delivery.objects.bulk_create(rows, ignore_conflicts=True)


def _queue_cleared(flag_pks: Iterable[int], at: datetime) -> None:
    """A clearing notice where the raising one went; pending reminders are moot now."""
    pks = list(flag_pks)
    notified = Delivery.objects.filter(flag_id__in=pks, kind="raised").values_list(
        "flag_id", "channel_id", "channel_key", "channel_name"
    )
    rows = [_row(f, c, key, name, "cleared", 0, at) for f, c, key, name in notified]
    if not rows:  # never notified, so no reminder is waiting either
        return
    Delivery.objects.bulk_create(rows, ignore_conflicts=True)
    Delivery.objects.filter(flag_id__in=pks, kind="reminder", status="pending").update(
        status="cancelled", next_attempt_at=None
    )


def queue_reminders(now: datetime) -> int:
    """For flags active past another interval, a reminder where the raising notice went."""
    every = timedelta(seconds=settings.RUNBOARD_NOTIFY_REMIND_AFTER_S)
    notified = Delivery.objects.filter(
        kind="raised", flag__cleared_at__isnull=True, flag__raised_at__lte=now - every
    ).values_list("flag_id", "channel_id", "channel_key", "channel_name", "flag__raised_at")
    rows = [
        _row(f, c, key, name, "reminder", int((now - raised_at) / every), now)
        for f, c, key, name, raised_at in notified
    ]
    if not rows:
        return 0
    # Only the current round: one per channel and interval, never a backlog of old ones.
    have = set(
        Delivery.objects.filter(
            Q(kind="reminder"), Q(flag_id__in={r.flag_id for r in rows})
        ).values_list("flag_id", "channel_key", "round")
    )
    new = [r for r in rows if (r.flag_id, r.channel_key, r.round) not in have]
    Delivery.objects.bulk_create(new, ignore_conflicts=True)
    return len(new)


def _row(
    flag_pk: int,
    channel_pk: int | None,
    key: str,
    name: str,
    kind: str,
    round_: int,
    at: datetime,
) -> Delivery:
    return Delivery(
        flag_id=flag_pk,
        channel_id=channel_pk,
        channel_key=key,
        channel_name=name,
        kind=kind,
        round=round_,
        status="pending",
        created_at=at,
        next_attempt_at=at,
    )
