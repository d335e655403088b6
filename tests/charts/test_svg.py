"""Chart geometry: axis tops, stacked bars, lines; plain functions, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from adminpanel.charts.svg import Chart, Series, draw, duration, nice_duration, nice_max

STARTS = [datetime(2026, 12, 1, 12, 0, tzinfo=UTC) + timedelta(minutes=i) for i in range(4)]


def test_an_axis_top_is_a_round_number_at_or_above_the_peak() -> None:
    assert [nice_max(v) for v in (0, 0.03, 1, 3, 7, 120)] == [1, 0.05, 1, 5, 10, 200]


def test_a_count_axis_has_a_whole_half_way_tick() -> None:
    assert [nice_max(v, whole=True) for v in (0, 1, 3, 5, 30)] == [2, 2, 4, 10, 50]


def test_a_duration_axis_steps_in_minutes_and_hours() -> None:
    assert [nice_duration(v) for v in (5, 200, 2000, 25_000)] == [10, 300, 3600, 43200]
    assert [duration(v) for v in (45, 600, 25_200)] == ["45 s", "10 min", "7 h"]


def test_stacked_bars_sit_on_each_other_and_skip_zeros() -> None:
    chart = Chart("a", "Actions", [Series("ok", "s-ok", [0, 2, 0, 0]),
                                   Series("err", "s-crit", [0, 2, 0, 0])], "")  # fmt: skip
    draw(chart, STARTS, style="stacked", whole=True)
    ok, err = chart.bars
    assert (ok.css, err.css) == ("s-ok", "s-crit")
    assert ok.x == err.x and err.y + err.height == ok.y
    assert ok.y + ok.height == chart.bottom
    assert err.y == 8  # 4 is the axis top: the stack fills the plot
    assert ok.tip == "12:01 UTC · ok: 2"


def test_a_line_has_one_point_per_bucket_and_time_labels_stay_inside() -> None:
    chart = draw(Chart("l", "Locks", [Series("held", "s-info", [1, 2, 3, 4])], ""), STARTS,
                 style="lines")  # fmt: skip
    [line] = chart.lines
    assert len(line.points.split()) == 4
    assert [(label.text, label.anchor) for label in chart.x_labels] == [
        ("12:00", "start"), ("12:02", ""), ("12:03", "end"),
    ]  # fmt: skip
