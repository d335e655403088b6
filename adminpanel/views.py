"""Server-rendered pages. Thin: validate the request, query, render one template."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from adminpanel.forms import REFRESH_CHOICES, SessionFilterForm
from adminpanel.models import Flag, Gateway, Session, TimelineEvent
from gateway_bridge.events import PHASES

PAGE_SIZE = 50
TIMELINE_LIMIT = 200
SKIPS_LIMIT = 50


def _active_flags() -> Prefetch[Any]:
    return Prefetch(
        "flags",
        queryset=Flag.objects.filter(cleared_at__isnull=True).order_by("severity", "code"),
        to_attr="active_flags",
    )


def filtered_sessions(filters: dict[str, Any]) -> QuerySet[Session]:
    sessions = Session.objects.select_related("gateway")
    if filters.get("gateway"):
        sessions = sessions.filter(gateway__name=filters["gateway"])
    if filters.get("agent"):
        sessions = sessions.filter(agent=filters["agent"])
    if filters.get("channel"):
        sessions = sessions.filter(channel=filters["channel"])
    if filters.get("phase"):
        sessions = sessions.filter(locked=True, phase=filters["phase"])
    if filters.get("q"):
        sessions = sessions.filter(session_key__contains=filters["q"])
    if filters.get("flagged"):
        sessions = sessions.filter(flag_count__gt=0)
    # Oldest lock first: the sessions most likely stuck are on top.
    # ("critical" sorts before "warning", so ascending severity is worst first.)
    return sessions.order_by("-locked", "lock_acquired_at", "-updated_at", "pk")


@login_required
def sessions(request: HttpRequest) -> HttpResponse:
    form = SessionFilterForm(request.GET)
    filters = form.cleaned_data if form.is_valid() else {}
    paginator = Paginator(filtered_sessions(filters).prefetch_related(_active_flags()), PAGE_SIZE)
    page = paginator.get_page(filters.get("page") or 1)
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "filters": filters,
        "page": page,
        "query": query.urlencode(),
        "phases": PHASES,
        "gateway_names": Gateway.objects.order_by("name").values_list("name", flat=True),
        "refresh_choices": REFRESH_CHOICES,
        "refresh_s": filters.get("refresh"),
    }
    status = 200 if form.is_valid() else 400
    return render(request, "adminpanel/sessions.html", _common(context), status=status)


@login_required
def session_detail(request: HttpRequest, pk: int) -> HttpResponse:
    session = get_object_or_404(Session.objects.select_related("gateway"), pk=pk)
    flags = session.flags.filter(cleared_at__isnull=True).order_by("severity", "code")
    timeline = list(
        TimelineEvent.objects.filter(session=session).order_by("-at", "-seq")[:TIMELINE_LIMIT]
    )
    for event in timeline:
        event.data_summary = _summary(event.data)  # type: ignore[attr-defined]
    waiting = session.waiters.filter(resolved_at__isnull=True).order_by("since")
    skipped = session.skips.order_by("-at")[:SKIPS_LIMIT]
    context = {
        "session": session,
        "flags": flags,
        "waiting": waiting,
        "skipped": skipped,
        "timeline": timeline,
    }
    return render(request, "adminpanel/session_detail.html", _common(context))


@login_required
def gateways(request: HttpRequest) -> HttpResponse:
    context = {"gateways": Gateway.objects.order_by("name")}
    return render(request, "adminpanel/gateways.html", _common(context))


def _common(context: dict[str, Any]) -> dict[str, Any]:
    context["now"] = timezone.now()
    context["stuck_count"] = Session.objects.filter(flag_count__gt=0).count()
    return context


def _summary(data: Any) -> str:
    if not data:
        return ""
    text = json.dumps(data, separators=(",", ":"), sort_keys=True, default=str)
    return text if len(text) <= 160 else text[:157] + "..."
