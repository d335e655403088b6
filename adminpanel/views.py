"""Server-rendered pages. Thin: validate the request, query, render one template.

The rows come from ``session_rows`` (the API and the live push load them
there too); the session's history reads as ``timeline`` words it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Min, Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from adminpanel.bridges import leases
from adminpanel.forms import (
    REFRESH_CHOICES,
    SORTS,
    SessionFilterForm,
    StrictQueryForm,
    StuckFilterForm,
    TimelineForm,
    WarningsForm,
)
from adminpanel.http import bad_request, page_context
from adminpanel.models import (
    AuditEntry,
    DispatchSkip,
    Gateway,
    RecoveryPolicy,
    Run,
    Session,
    TimelineEvent,
)
from adminpanel.roles import view_required
from adminpanel.session_rows import (
    PAGE_SIZE,
    SORT_SEGMENTS,
    filtered_sessions,
    keyset_page,
    with_oldest_flag,
)
from adminpanel.timeline import FORCED_HOWS, RECOVERY_HOWS, build_timeline
from gateway_bridge.events import PHASES
from gateway_bridge.observer import OBSERVER_BLIND_SPOTS
from gateway_bridge.scopes import missing_for_actions, scopes_for

# The visible total is bounded: no COUNT(*) over the whole table.
COUNT_CAP = 1000
TIMELINE_LIMIT = 200
# The session page's action buttons (adminpanel/action_views.py): URL slug, label.
ACTION_LINKS = (
    ("force-clear", "Force-clear"),
    ("clear-and-requeue", "Clear and requeue"),
    ("requeue", "Requeue"),
    ("abort", "Abort"),
)
WARNING_GROUPS_LIMIT = 200
WARNINGS_DEFAULT_HOURS = 24


def _list_page(
    request: HttpRequest, form: StrictQueryForm, sort: str, *, stuck: bool
) -> HttpResponse:
    if not form.is_valid():
        return bad_request(request, form)
    filters = dict(form.cleaned_data)
    if stuck:
        filters["flagged"] = True
    sessions = filtered_sessions(filters)
    if sort == "worst":
        sessions = with_oldest_flag(sessions)
    try:
        page = keyset_page(sessions, SORT_SEGMENTS[sort], filters.get("after"), PAGE_SIZE)
    except ValueError:
        form.add_error("after", "This page cursor belongs to another sort; start from page one.")
        return bad_request(request, form)
    if page.is_first and page.next_cursor is None:
        count = len(page.rows)  # the whole match is on this page: nothing to count
    else:
        count = filtered_sessions(filters)[: COUNT_CAP + 1].count()
    query = request.GET.copy()
    query.pop("after", None)
    context = {
        "form": form,
        "filters": filters,
        "stuck": stuck,
        "sort": sort,
        "sorts": SORTS,
        "page": page.rows,
        "keyset": page,
        "count": min(count, COUNT_CAP),
        "count_capped": count > COUNT_CAP,
        "query": query.urlencode(),
        "phases": PHASES,
        "gateway_names": list(Gateway.objects.order_by("name").values_list("name", flat=True)),
        "refresh_choices": REFRESH_CHOICES,
        "refresh_s": filters.get("refresh"),
        "list_url": request.path,
    }
    template = "adminpanel/sessions.html"
    if getattr(request, "htmx", False):
        template = "adminpanel/sessions_table.html"
    return render(request, template, page_context(context))


@view_required
def sessions(request: HttpRequest) -> HttpResponse:
    form = SessionFilterForm(request.GET)
    sort = (form.cleaned_data.get("sort") or "age") if form.is_valid() else "age"
    return _list_page(request, form, sort, stuck=False)


@view_required
def stuck(request: HttpRequest) -> HttpResponse:
    return _list_page(request, StuckFilterForm(request.GET), "worst", stuck=True)


@view_required
def session_detail(request: HttpRequest, pk: int) -> HttpResponse:
    form = TimelineForm(request.GET)
    if not form.is_valid():
        return bad_request(request, form)
    limit = form.cleaned_data.get("limit") or TIMELINE_LIMIT
    session = get_object_or_404(Session.objects.select_related("gateway"), pk=pk)
    flags = list(session.flags.order_by("-raised_at")[:limit])
    events = list(
        TimelineEvent.objects.filter(session=session).order_by("-at", "-seq")[: limit + 1]
    )
    attempts = list(
        AuditEntry.objects.filter(session_pk=session.pk, kind="intent")
        .select_related("outcome")
        .order_by("-pk")[:limit]
    )
    context = {
        "session": session,
        "action_links": ACTION_LINKS,
        "flags": sorted(
            (f for f in flags if f.cleared_at is None), key=lambda f: (f.severity, f.code)
        ),
        "waiting": list(session.waiters.filter(resolved_at__isnull=True).order_by("since")),
        "runs": list(session.runs.order_by("-started_at", "-pk")[:20]),
        "timeline": build_timeline(events[:limit], flags, attempts)[:limit],
        "timeline_more": len(events) > limit,
        "limit": limit,
    }
    return render(request, "adminpanel/session_detail.html", page_context(context))


@view_required
def warnings(request: HttpRequest) -> HttpResponse:
    form = WarningsForm(request.GET)
    if not form.is_valid():
        return bad_request(request, form)
    hours = form.cleaned_data.get("hours") or WARNINGS_DEFAULT_HOURS
    since = timezone.now() - timedelta(hours=hours)
    ledger = DispatchSkip.objects.filter(at__gte=since)
    if form.cleaned_data.get("gateway"):
        ledger = ledger.filter(gateway__name=form.cleaned_data["gateway"])
    skips = _grouped(ledger.filter(kind="skip").values("session", "reason"), order="-last")
    errors = _grouped(
        ledger.filter(kind="drain_failed").values("reason"),
        order="-count",
        sessions=Count("session", distinct=True),
    )
    context = {
        "form": form,
        "hours": hours,
        "skips": skips,
        "errors": errors,
        "releases": _forced_releases(since, form.cleaned_data.get("gateway")),
        "gateway_names": list(Gateway.objects.order_by("name").values_list("name", flat=True)),
        "gateway": form.cleaned_data.get("gateway") or "",
    }
    return render(request, "adminpanel/warnings.html", page_context(context))


def _grouped(rows: QuerySet[Any], *, order: str, **extra: Any) -> list[dict[str, Any]]:
    """Aggregate ledger rows, then attach each group's latest row (two queries in all)."""
    groups = list(
        rows.annotate(
            count=Count("pk"), first=Min("at"), last=Max("at"), latest_pk=Max("pk"), **extra
        ).order_by(order, "reason")[:WARNING_GROUPS_LIMIT]
    )
    latest = DispatchSkip.objects.select_related("session", "gateway").in_bulk(
        [g["latest_pk"] for g in groups]
    )
    for group in groups:
        group["latest"] = latest[group["latest_pk"]]
    return groups


def _forced_releases(since: datetime, gateway: str | None) -> list[dict[str, Any]]:
    """Locks released by force (the gateway's self-healing log lines, or an operator)."""
    runs = Run.objects.filter(released_at__gte=since, release_how__in=FORCED_HOWS)
    if gateway:
        runs = runs.filter(gateway__name=gateway)
    groups: list[dict[str, Any]] = [
        dict(row)
        for row in runs.values("release_how")
        .annotate(
            count=Count("pk"),
            sessions=Count("session", distinct=True),
            first=Min("released_at"),
            last=Max("released_at"),
            latest_pk=Max("pk"),
        )
        .order_by("-count", "release_how")
    ]
    latest = Run.objects.select_related("session").in_bulk([g["latest_pk"] for g in groups])
    for group in groups:
        group["latest"] = latest[group["latest_pk"]]
        group["meaning"] = RECOVERY_HOWS.get(group["release_how"], "")
    return groups


def _policies() -> Prefetch[Any]:
    enabled = RecoveryPolicy.objects.filter(enabled=True).order_by("name")
    return Prefetch("policies", queryset=enabled, to_attr="enabled_policies")


def with_bridges(gateways: Iterable[Gateway]) -> list[Gateway]:
    """Each gateway with ``bridge``: the unexpired lease of the bridge that mirrors it, or None."""
    now = timezone.now()
    rows = list(gateways)
    for g in rows:
        g.bridge = leases.holder_of(g, now)  # type: ignore[attr-defined]
    return rows


@view_required
def gateways(request: HttpRequest) -> HttpResponse:
    form = StrictQueryForm(request.GET)
    if not form.is_valid():
        return bad_request(request, form)
    rows = with_bridges(
        Gateway.objects.select_related("lease").order_by("name").prefetch_related(_policies())
    )
    for g in rows:
        g.scope_notes = scope_notes(g)  # type: ignore[attr-defined]
    context = {
        "gateways": rows,
        "observer_limits": " ".join(OBSERVER_BLIND_SPOTS),
        "observer_blind_spots": OBSERVER_BLIND_SPOTS,
    }
    return render(request, "adminpanel/gateways.html", page_context(context))


def scope_notes(g: Gateway) -> list[str]:
    """What a missing OpenClaw scope disables on this gateway, in words (empty: nothing)."""
    requested = scopes_for(g.access)
    granted = requested if g.granted_scopes is None else g.granted_scopes
    missing = missing_for_actions(g.mode, granted)
    return [
        f"{action.replace('_', '-')} needs {' and '.join(scopes)}"
        for action, scopes in missing.items()
    ]
