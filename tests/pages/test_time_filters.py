"""The cheap time filters the rows use (they run 50 times per page)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from adminpanel.templatetags.runboard import iso, utc

MOMENT = datetime(2026, 11, 22, 12, 0, 5, 123456, tzinfo=UTC)


def test_iso_is_what_a_time_element_and_live_js_read() -> None:
    assert iso(MOMENT) == "2026-11-22T12:00:05.123456+00:00"
    assert iso(None) == ""


def test_utc_shows_the_moment_in_utc_whatever_its_zone() -> None:
    elsewhere = MOMENT.astimezone(timezone(timedelta(hours=2)))
    assert utc(elsewhere) == "2026-11-22 12:00:05"
    assert utc(elsewhere, "ms") == "2026-11-22 12:00:05.123"


def test_a_missing_moment_reads_as_a_dash() -> None:
    assert utc(None) == "\u2013"
