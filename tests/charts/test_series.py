"""Bucketing: rows at known times land in the right bucket of the right gateway."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from adminpanel.audit import chain as audit
from adminpanel.charts import series
from adminpanel.charts.series import WINDOWS, Span
from tests.charts.support import (
    NOW,
    event,
    flag,
    gateway_with_session,
    minutes_ago,
    run,
    skip,
)

pytestmark = pytest.mark.django_db


def hour() -> Span:
    return Span.ending(WINDOWS["1h"], NOW)


def test_an_hour_is_sixty_minute_buckets_ending_with_the_current_minute() -> None:
    span = hour()
    assert span.start == datetime(2026, 12, 1, 11, 31, tzinfo=UTC)
    assert span.end == datetime(2026, 12, 1, 12, 31, tzinfo=UTC)
    assert len(span.starts()) == 60
    assert span.sample_times()[-1] == NOW


def test_a_day_is_ninety_six_quarter_hour_buckets() -> None:
    span = Span.ending(WINDOWS["1d"], NOW)
    assert (span.start, span.end) == (
        datetime(2026, 11, 30, 12, 45, tzinfo=UTC),
        datetime(2026, 12, 1, 12, 45, tzinfo=UTC),
    )
    assert span.index(NOW) == 95


def test_flags_raised_and_cleared_are_counted_in_their_minutes() -> None:
    gateway, session = gateway_with_session()
    flag(session, minutes_ago(0.1))
    flag(session, minutes_ago(5), cleared=minutes_ago(2))
    flag(session, minutes_ago(90), cleared=minutes_ago(4.9))  # raised before the window
    raised, cleared = series.flags_raised(hour())[gateway.pk], series.flags_cleared(hour())
    assert (raised[59], raised[54], sum(raised)) == (1, 1, 2)
    assert (cleared[gateway.pk][57], cleared[gateway.pk][54], sum(cleared[gateway.pk])) == (1, 1, 2)


def test_skips_per_minute_in_a_day_are_a_quarter_hours_count_divided_by_fifteen() -> None:
    gateway, session = gateway_with_session()
    for n in range(30):
        skip(session, NOW - timedelta(minutes=3, seconds=n))
    span = Span.ending(WINDOWS["1d"], NOW)
    values = series.rates(series.skips(span)[gateway.pk], span, 60)
    assert values[94] == pytest.approx(2.0)  # 12:15-12:30, the bucket before the current one
    assert sum(values) == pytest.approx(2.0)


def test_events_per_second_are_per_gateway() -> None:
    gateway, _ = gateway_with_session()
    other, _ = gateway_with_session("gw-us")
    for seq in range(120):
        event(gateway, NOW - timedelta(minutes=10, seconds=seq % 50), seq)
    event(other, minutes_ago(1), 1)
    counts = series.events(hour())
    assert (sum(counts[gateway.pk]), sum(counts[other.pk])) == (120, 1)


def test_the_current_buckets_rate_is_over_the_seconds_it_has_had() -> None:
    gateway, _ = gateway_with_session()
    for seq in range(10):
        event(gateway, NOW - timedelta(seconds=seq), seq)  # NOW is 20 s into its minute
    rates = series.rates(series.events(hour())[gateway.pk], hour(), 1)
    assert rates[59] == pytest.approx(0.5)


def test_locks_held_and_the_oldest_lock_age_are_read_at_each_buckets_end() -> None:
    gateway, session = gateway_with_session()
    run(session, "old", minutes_ago(30))  # still held
    run(session, "short", minutes_ago(10.5), released=minutes_ago(9.5))
    run(session, "before", minutes_ago(120), released=minutes_ago(100))  # outside the window
    held, oldest = series.locks(hour(), [gateway.pk])
    span = hour()
    i = span.index(minutes_ago(10.5))
    assert i is not None
    assert held[gateway.pk][i] == 2  # both at that minute's end
    assert held[gateway.pk][59] == 1
    assert oldest[gateway.pk][59] == pytest.approx(30 * 60)
    assert held[gateway.pk][0] == 0 and oldest[gateway.pk][0] == 0


def test_actions_are_counted_by_result() -> None:
    gateway, _session = gateway_with_session()
    for result in ("success", "success", "error"):
        audit.append(kind="outcome", action="force_clear", gateway=gateway.name, result=result)
    span = Span.ending(WINDOWS["1h"], timezone.now())
    counts = series.actions_by_result(span, {gateway.name: gateway.pk})[gateway.pk]
    assert (sum(counts["success"]), sum(counts["error"])) == (2, 1)
    assert "conflict" not in counts
