"""The template filters: compact ages, and the row links reversed once per row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.urls import reverse, set_script_prefix

from adminpanel.templatetags.runboard import CLEAR_ACTION, age, clear_url, detail_url

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


def test_row_links_are_what_the_url_tag_would_reverse() -> None:
    session = SimpleNamespace(pk=7, run_id="run 1/ä&x")
    clear = reverse("session_action", args=[7, CLEAR_ACTION])
    assert detail_url(7) == reverse("session_detail", args=[7]) == "/sessions/7/"
    assert clear_url(session) == f"{clear}?run=run%201/%C3%A4%26x"
    assert clear_url(SimpleNamespace(pk=7, run_id="")) == f"{clear}?run="


def test_row_links_follow_the_script_prefix() -> None:
    set_script_prefix("/runboard/")
    try:
        assert detail_url(7) == "/runboard/sessions/7/"
    finally:
        set_script_prefix("/")
    assert detail_url(7) == "/sessions/7/"
