"""Numbers to SVG shapes: plain data the template writes out; no Django, no clock.

Colours are CSS classes (static/adminpanel/charts.css), so the site's light
and dark themes apply; the markup carries geometry only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

WIDTH, HEIGHT = 440, 150
LEFT, RIGHT, TOP, BOTTOM = 44, 4, 8, 20
# Steps for an axis of durations: a minute, five, a quarter hour, an hour … (seconds).
DURATION_STEPS = (10, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 43200, 86400)


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    css: str  # s-crit, s-ok, s-warn, s-info, s-muted
    values: Sequence[float]


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    tip: str


@dataclass(frozen=True, slots=True)
class Line:
    points: str
    css: str


@dataclass(frozen=True, slots=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = ""  # start | end: the first and last time label stay inside the chart


@dataclass
class Chart:
    slug: str
    title: str
    series: list[Series]
    total: str  # a one-line summary for the legend and screen readers
    bars: list[Bar] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    y_labels: list[Label] = field(default_factory=list)
    x_labels: list[Label] = field(default_factory=list)
    grid: list[float] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    bottom: int = HEIGHT - BOTTOM


def nice_max(value: float, *, whole: bool = False) -> float:
    """The next 1, 2 or 5 times a power of ten at or above ``value`` (1 for nothing).

    ``whole``: counts, whose half-way tick must be a whole number too (2, 4, 10, 20 …).
    """
    if value <= 0:
        return 2.0 if whole else 1.0
    power = 10 ** math.floor(math.log10(value))
    steps = (2, 4, 10) if whole and power < 10 else (1, 2, 5, 10)
    for step in steps:
        if value <= step * power:
            return float(step * power)
    return float(10 * power)  # unreachable; keeps the type checker sure


def nice_duration(value: float) -> float:
    """The first of ``DURATION_STEPS`` at or above ``value``, doubled as often as needed."""
    for step in DURATION_STEPS:
        if value <= step:
            return float(step)
    return float(DURATION_STEPS[-1] * math.ceil(value / DURATION_STEPS[-1]))


def number(value: float) -> str:
    if value == 0:
        return "0"
    if value >= 1000:
        return f"{value / 1000:g}k"
    if value >= 10 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.2g}"


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.3g} h"


def draw(
    chart: Chart,
    starts: Sequence[datetime],
    *,
    style: str,
    fmt: Callable[[float], str] = number,
    whole: bool = False,
) -> Chart:
    """Fill ``chart``'s shapes: ``style`` is bars (side by side), stacked or lines.

    ``whole``: the values are counts, so the axis ticks are whole numbers.
    """
    n = len(starts)
    plot_w, plot_h = chart.right - chart.left, chart.bottom - TOP
    slot = plot_w / max(n, 1)
    stacked = style == "stacked"
    peak = max(
        (
            sum(s.values[i] for s in chart.series)
            if stacked
            else max(s.values[i] for s in chart.series)
            for i in range(n)
        ),
        default=0.0,
    )
    top = nice_duration(peak) if fmt is duration else nice_max(peak, whole=whole)

    def y(v: float) -> float:
        return round(chart.bottom - v / top * plot_h, 2)

    for frac in (0.0, 0.5, 1.0):
        chart.grid.append(y(top * frac))
        chart.y_labels.append(Label(chart.left - 4, y(top * frac), fmt(top * frac)))
    ends = {0: ("start", chart.left), n - 1: ("end", chart.right)}
    for i in (0, n // 2, n - 1) if n else ():
        anchor, x = ends.get(i, ("", chart.left + slot * (i + 0.5)))
        chart.x_labels.append(Label(round(x, 2), HEIGHT - 5, starts[i].strftime("%H:%M"), anchor))
    if style == "lines":
        for s in chart.series:
            points = " ".join(
                f"{chart.left + slot * (i + 0.5):.2f},{y(v)}" for i, v in enumerate(s.values)
            )
            chart.lines.append(Line(points, s.css))
        return chart
    gap = min(1.0, slot * 0.15)
    for i, at in enumerate(starts):
        base = 0.0
        width = (slot - gap) / (1 if stacked else len(chart.series))
        for k, s in enumerate(chart.series):
            v = s.values[i]
            if v <= 0:
                continue
            x = chart.left + slot * i + gap / 2 + (0 if stacked else k * width)
            y1 = y(base)
            y0 = min(y(base + v), y1 - 1)  # a small count still shows
            tip = f"{at:%H:%M} UTC · {s.name}: {fmt(v)}"
            chart.bars.append(Bar(round(x, 2), y0, round(width, 2), round(y1 - y0, 2), s.css, tip))
            if stacked:
                base += v
    return chart
