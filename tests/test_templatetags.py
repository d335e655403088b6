"""The compact, seconds-precise ages the pages show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adminpanel.templatetags.runboard import age

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (42, "42 s"), (192, "3 min 12 s"), (7500, "2 h 5 min"), (273600, "3 d 4 h")],
)
def test_an_age_reads_in_the_largest_two_units(seconds: int, text: str) -> None:
    assert age(NOW - timedelta(seconds=seconds), NOW) == text


def test_a_missing_time_has_no_age() -> None:
    assert age(None, NOW) == "\u2013"


def test_a_time_slightly_in_the_future_is_not_a_negative_age() -> None:
    assert age(NOW + timedelta(seconds=2), NOW) == "0 s"
