"""The charts page: per gateway, the last hour or day; htmx refreshes its partial."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from adminpanel.charts import series
from adminpanel.charts.series import WINDOWS, Span
from adminpanel.charts.svg import Chart, Series, draw, duration, number
from adminpanel.forms import StrictQueryForm
from adminpanel.http import bad_request, page_context
from adminpanel.models import Gateway
from adminpanel.roles import view_required

REFRESH_S = 10
RESULT_CSS = {"success": "s-ok", "noop": "s-muted", "conflict": "s-warn", "error": "s-crit",
              "interrupted": "s-crit"}  # fmt: skip


class ChartsForm(StrictQueryForm):
    gateway = forms.SlugField(required=False, max_length=64)
    window = forms.ChoiceField(required=False, choices=[(w, w) for w in WINDOWS])


@view_required
def charts(request: HttpRequest) -> HttpResponse:
    form = ChartsForm(request.GET)
    if not form.is_valid():
        return bad_request(request, form)
    window = WINDOWS[form.cleaned_data.get("window") or "1h"]
    wanted = form.cleaned_data.get("gateway") or ""
    gateways = list(Gateway.objects.order_by("name"))
    shown = [g for g in gateways if g.name == wanted] if wanted else gateways
    context = {
        "window": window,
        "windows": WINDOWS.values(),
        "gateway": wanted,
        "gateways": gateways,
        "panels": panels(shown, Span.ending(window, timezone.now())),
        "refresh_s": None,
        "every_s": REFRESH_S,
        "now": timezone.now(),
    }
    if getattr(request, "htmx", False):
        return render(request, "adminpanel/charts_panel.html", context)
    return render(request, "adminpanel/charts.html", page_context(context))


def panels(gateways: list[Gateway], span: Span) -> list[tuple[Gateway, list[Chart]]]:
    """Six charts per gateway; each measure read once for all of them."""
    if not gateways:
        return []
    pks = [g.pk for g in gateways]
    raised, cleared = series.flags_raised(span), series.flags_cleared(span)
    skips, events = series.skips(span), series.events(span)
    held, oldest = series.locks(span, pks)
    actions = series.actions_by_result(span, {g.name: g.pk for g in gateways})
    starts = span.starts()
    zero = [0.0] * span.window.buckets
    out = []
    for g in gateways:
        pk = g.pk
        by_result = actions.get(pk, {})
        charts = [
            _chart("flags", "Flags raised and cleared", starts, [
                Series("raised", "s-crit", raised.get(pk, zero)),
                Series("cleared", "s-ok", cleared.get(pk, zero)),
            ], "bars", whole=True),
            _chart("skips", "Skips per minute", starts, [
                Series("skips/min", "s-warn", series.rates(skips.get(pk, zero), span, 60)),
            ], "bars", total=_count(sum(skips.get(pk, zero)), "skip")),
            _chart("locks", "Locks held", starts, [
                Series("locks held", "s-info", held.get(pk, zero)),
            ], "lines", total=f"now {held.get(pk, zero)[-1]:.0f}", whole=True),
            _chart("lock-age", "Oldest lock's age", starts, [
                Series("oldest lock", "s-warn", oldest.get(pk, zero)),
            ], "lines", total=f"now {duration(oldest.get(pk, zero)[-1])}", fmt=duration),
            _chart("events", "Events per second", starts, [
                Series("events/s", "s-info", series.rates(events.get(pk, zero), span, 1)),
            ], "lines", total=_count(sum(events.get(pk, zero)), "event")),
            _chart("actions", "Actions by result", starts, [
                Series(r, RESULT_CSS[r], by_result.get(r, zero)) for r in series.RESULTS
            ], "stacked", whole=True),
        ]  # fmt: skip
        out.append((g, charts))
    return out


def _count(n: float, word: str) -> str:
    return f"{n:.0f} {word}{'' if n == 1 else 's'} in all"


def _chart(
    slug: str,
    title: str,
    starts: list[datetime],
    lines: list[Series],
    style: str,
    *,
    total: str = "",
    fmt: Callable[[float], str] = number,
    whole: bool = False,
) -> Chart:
    if not total:
        total = ", ".join(f"{sum(s.values):.0f} {s.name}" for s in lines)
    return draw(Chart(slug, title, lines, total), starts, style=style, fmt=fmt, whole=whole)
