"""Server-rendered pages. Thin: validate the request, query, render one template.

Lists page by *keyset* (seek) pagination: each sort is a few segments, each an
indexed order over non-null columns ending in the primary key, and the next
page starts after the last row's values. No OFFSET, and no COUNT(*) over the
whole table: the visible total is bounded (``COUNT_CAP``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import (
    Count,
    Max,
    Min,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    prefetch_related_objects,
)
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone

from adminpanel.actions import LABELS
from adminpanel.forms import (
    REFRESH_CHOICES,
    SORTS,
    SessionFilterForm,
    StrictQueryForm,
    StuckFilterForm,
    TimelineForm,
    WarningsForm,
    encode_cursor,
)
from adminpanel.models import (
    AuditEntry,
    DispatchSkip,
    Flag,
    Gateway,
    RecoveryPolicy,
    Run,
    Session,
    TimelineEvent,
)
from adminpanel.roles import view_required
from gateway_bridge.events import PHASES
from gateway_bridge.observer import OBSERVER_BLIND_SPOTS

PAGE_SIZE = 50
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

# What a gateway without Runboard's companion plugin cannot show (docs/protocol.md).

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
_DATETIME_KEYS = frozenset({"lock_acquired_at", "last_progress_at", "oldest_flag"})


def _active_flags() -> Prefetch[Any]:
    return Prefetch(
        "flags",
        queryset=Flag.objects.filter(cleared_at__isnull=True).order_by("severity", "code"),
        to_attr="active_flags",
    )


def stuck_count() -> int:
    """The header's count: sessions with at least one active flag (an indexed range)."""
    return Session.objects.filter(flag_count__gt=0).count()


# Keyset pagination ---------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """Rows matching ``where``, in ``order``: (column, descending) pairs, non-null, pk last."""

    where: Q
    order: tuple[tuple[str, bool], ...]

    def order_by(self) -> list[str]:
        return [("-" if desc else "") + name for name, desc in self.order]


_LOCKED_AT = Q(locked=True, lock_acquired_at__isnull=False)
_LOCKED_NO_AT = Q(locked=True, lock_acquired_at__isnull=True)
_IDLE_NEWEST = Segment(Q(locked=False), (("pk", True),))

SORT_SEGMENTS: dict[str, tuple[Segment, ...]] = {
    # Oldest lock first: the sessions most likely stuck are on top; then idle, newest first.
    "age": (
        Segment(_LOCKED_AT, (("lock_acquired_at", False), ("pk", False))),
        Segment(_LOCKED_NO_AT, (("pk", False),)),
        _IDLE_NEWEST,
    ),
    "-age": (
        Segment(_LOCKED_AT, (("lock_acquired_at", True), ("pk", True))),
        Segment(_LOCKED_NO_AT, (("pk", False),)),
        _IDLE_NEWEST,
    ),
    "progress": (
        Segment(
            Q(locked=True, last_progress_at__isnull=False),
            (("last_progress_at", False), ("pk", False)),
        ),
        Segment(~Q(locked=True, last_progress_at__isnull=False), (("pk", True),)),
    ),
    "waiters": (Segment(Q(), (("waiter_count", True), ("pk", False))),),
    "key": (Segment(Q(), (("session_key", False), ("pk", False))),),
    # The stuck tab: critical before warning, then the oldest active flag.
    "worst": (Segment(Q(), (("worst_severity", False), ("oldest_flag", False), ("pk", False))),),
}


def _cursor_value(value: Any) -> int | str:
    if isinstance(value, datetime):
        return (value - _EPOCH) // timedelta(microseconds=1)
    return value  # type: ignore[no-any-return]


def _column_value(name: str, value: int | str) -> Any:
    if name in _DATETIME_KEYS:
        if not isinstance(value, int):
            raise ValueError(name)
        return _EPOCH + timedelta(microseconds=value)
    if name == "session_key" or name == "worst_severity":
        if not isinstance(value, str):
            raise ValueError(name)
        return value
    if not isinstance(value, int):
        raise ValueError(name)
    return value


def _after(segment: Segment, values: list[Any]) -> Q:
    """Rows strictly after ``values`` in the segment's order (a lexicographic seek)."""
    condition = Q(pk__in=[])
    equal = Q()
    for (name, desc), value in zip(segment.order, values, strict=True):
        condition |= equal & Q(**{f"{name}__{'lt' if desc else 'gt'}": value})
        equal &= Q(**{name: value})
    return condition


@dataclass
class KeysetPage:
    rows: list[Session]
    next_cursor: str | None
    is_first: bool


def keyset_page(
    sessions: QuerySet[Session],
    segments: tuple[Segment, ...],
    cursor: list[int | str] | None,
    size: int = PAGE_SIZE,
) -> KeysetPage:
    """One page of ``sessions`` in the segments' order; ``ValueError`` for a foreign cursor.

    At most one query per segment plus one for the flags, however many rows.
    """
    start, after = 0, None
    if cursor:
        start = int(cursor[0])
        if not 0 <= start < len(segments) or len(cursor) - 1 != len(segments[start].order):
            raise ValueError("the cursor belongs to another sort")
        after = [
            _column_value(name, v)
            for (name, _), v in zip(segments[start].order, cursor[1:], strict=True)
        ]
    tagged: list[tuple[int, Session]] = []
    for index in range(start, len(segments)):
        segment = segments[index]
        part = sessions.filter(segment.where)
        if index == start and after is not None:
            part = part.filter(_after(segment, after))
        wanted = size + 1 - len(tagged)
        tagged.extend((index, row) for row in part.order_by(*segment.order_by())[:wanted])
        if len(tagged) > size:
            break
    page = [row for _, row in tagged[:size]]
    next_cursor = None
    if len(tagged) > size:
        index, last = tagged[size - 1]
        values = [_cursor_value(getattr(last, name)) for name, _ in segments[index].order]
        next_cursor = encode_cursor([index, *values])
    prefetch_related_objects(page, _active_flags())
    return KeysetPage(rows=page, next_cursor=next_cursor, is_first=cursor is None)


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
    return sessions


def _with_oldest_flag(sessions: QuerySet[Session]) -> QuerySet[Session]:
    oldest = Flag.objects.filter(session=OuterRef("pk"), cleared_at__isnull=True).order_by("since")
    return sessions.annotate(
        oldest_flag=Coalesce(Subquery(oldest.values("since")[:1]), Value(_FAR_FUTURE))
    )


# Pages ---------------------------------------------------------------------------------


def _bad_request(request: HttpRequest, form: StrictQueryForm) -> HttpResponse:
    context = {"form": form, "problems": form.messages()}
    return render(request, "adminpanel/bad_request.html", _common(context), status=400)


def _list_page(
    request: HttpRequest, form: StrictQueryForm, sort: str, *, stuck: bool
) -> HttpResponse:
    if not form.is_valid():
        return _bad_request(request, form)
    filters = dict(form.cleaned_data)
    if stuck:
        filters["flagged"] = True
    sessions = filtered_sessions(filters)
    if sort == "worst":
        sessions = _with_oldest_flag(sessions)
    try:
        page = keyset_page(sessions, SORT_SEGMENTS[sort], filters.get("after"), PAGE_SIZE)
    except ValueError:
        form.add_error("after", "This page cursor belongs to another sort; start from page one.")
        return _bad_request(request, form)
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
    return render(request, template, _common(context))


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
        return _bad_request(request, form)
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
    return render(request, "adminpanel/session_detail.html", _common(context))


@view_required
def warnings(request: HttpRequest) -> HttpResponse:
    form = WarningsForm(request.GET)
    if not form.is_valid():
        return _bad_request(request, form)
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
    return render(request, "adminpanel/warnings.html", _common(context))


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
        group["meaning"] = _RECOVERY_HOWS.get(group["release_how"], "")
    return groups


def _policies() -> Prefetch[Any]:
    enabled = RecoveryPolicy.objects.filter(enabled=True).order_by("name")
    return Prefetch("policies", queryset=enabled, to_attr="enabled_policies")


@view_required
def gateways(request: HttpRequest) -> HttpResponse:
    form = StrictQueryForm(request.GET)
    if not form.is_valid():
        return _bad_request(request, form)
    context = {
        "gateways": list(Gateway.objects.order_by("name").prefetch_related(_policies())),
        "observer_limits": " ".join(OBSERVER_BLIND_SPOTS),
        "observer_blind_spots": OBSERVER_BLIND_SPOTS,
    }
    return render(request, "adminpanel/gateways.html", _common(context))


def _common(context: dict[str, Any]) -> dict[str, Any]:
    context.setdefault("now", timezone.now())
    context["stuck_count"] = stuck_count()
    return context


# The session timeline ------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    """One line of a session's history, whatever table it came from."""

    at: datetime
    category: str  # lock, phase, waiter, skip, error, flag, store, recovery, audit, other
    title: str
    detail: str = ""
    run_id: str = ""
    url: str = ""  # where the line's own record is (an audit entry)


FORCED_HOWS = ("forced_settle", "stale_takeover", "force_clear")

# Lock releases that are recoveries: the gateway's own (automatic) or an operator's.
_RECOVERY_HOWS = {
    "forced_settle": "automatic: forced release after a terminal result",
    "stale_takeover": "automatic: stale takeover",
    "force_clear": "operator: force-clear",
    "restart": "gateway restart",
    "reconciled": "Runboard: the gateway's snapshot no longer had the lock",
}


def describe_event(event: TimelineEvent) -> TimelineEntry:
    """A registry event as a sentence an operator reads at a glance."""
    d: dict[str, Any] = event.data or {}
    kind, at, run = event.kind, event.at, event.run_id
    preview = d.get("message_preview") or ""
    if kind == "lock_acquired":
        detail = f"phase {d.get('phase', '?')}, {d.get('turn_kind', 'visible')} turn"
        return TimelineEntry(at, "lock", "Lock acquired", _join(detail, preview), run)
    if kind == "phase_changed":
        return TimelineEntry(at, "phase", f"Phase → {d.get('phase', '?')}", "", run)
    if kind == "run_activity":
        return TimelineEntry(at, "phase", "Progress", str(d.get("activity", "")), run)
    if kind == "run_ended":
        code = d.get("code") or ""
        return TimelineEntry(at, "phase", f"Run ended: {d.get('result', '?')}", code, run)
    if kind == "lock_released" or kind.startswith("lock_"):
        how = d.get("how") or kind.removeprefix("lock_")
        inferred = "" if kind == "lock_released" else "inferred by Runboard"
        category = "recovery" if how in _RECOVERY_HOWS and how != "normal" else "lock"
        detail = _join(_RECOVERY_HOWS.get(how, ""), str(d.get("detail") or ""), inferred)
        return TimelineEntry(at, category, f"Lock released ({how})", detail, run)
    if kind == "run_lost_at_restart":
        return TimelineEntry(at, "recovery", "Run lost at gateway restart", "", run)
    if kind == "waiter_added":
        timeout = d.get("timeout_ms")
        wait = "no timeout: waits forever" if timeout is None else f"timeout {timeout} ms"
        behind = d.get("blocking_run_id") or ""
        detail = _join(wait, f"behind run {behind}" if behind else "", preview)
        return TimelineEntry(at, "waiter", "Message waiting for the lock", detail, run)
    if kind == "waiter_resolved":
        title = f"Waiting message {d.get('outcome', 'resolved')}"
        return TimelineEntry(at, "waiter", title, str(d.get("waiter_id", "")), run)
    if kind == "dispatch_skipped":
        title = f"Dispatch skipped ({d.get('reason', '?')})"
        behind = d.get("blocking_run_id") or ""
        detail = _join(f"blocked by run {behind}" if behind else "", preview)
        return TimelineEntry(at, "skip", title, detail, run)
    if kind == "followup_drain_failed":
        title = f"Follow-up drain failed: {d.get('error', 'error')}"
        return TimelineEntry(at, "error", title, _join(str(d.get("message", "")), preview), run)
    if kind == "session_status_changed":
        return TimelineEntry(at, "store", f"Session store: {d.get('status', '?')}", "", run)
    return TimelineEntry(at, "other", kind.replace("_", " ").capitalize(), _summary(d), run)


def describe_flag(flag: Flag) -> list[TimelineEntry]:
    """A flag adds up to two lines: raised (with its why) and cleared."""
    entries = [
        TimelineEntry(
            flag.raised_at, "flag", f"Flag raised: {flag.code} ({flag.severity})", flag.why
        )
    ]
    if flag.cleared_at is not None:
        entries.append(TimelineEntry(flag.cleared_at, "flag", f"Flag cleared: {flag.code}"))
    return entries


def describe_attempt(intent: AuditEntry) -> TimelineEntry:
    """An action attempt: "force-clear by operator: <reason> → success", linked to its entry."""
    try:
        done: AuditEntry | None = intent.outcome
    except AuditEntry.DoesNotExist:
        done = None
    action = LABELS.get(intent.action, intent.action.replace("_", " ")).lower()
    actor = f"policy {intent.actor}" if intent.actor_kind == "policy" else intent.actor
    result = done.result if done else "pending — no outcome recorded"
    dry = " (dry run)" if intent.dry_run else ""
    title = f"{action.capitalize()}{dry} by {actor}: {intent.reason} → {result}"
    url = reverse("audit_entry", args=[intent.pk])
    detail = done.detail if done else ""
    return TimelineEntry(intent.at, "audit", title, detail, intent.expect_run_id, url)


def build_timeline(
    events: list[TimelineEvent], flags: list[Flag], attempts: list[AuditEntry] | None = None
) -> list[TimelineEntry]:
    """Everything that happened to a session, newest first."""
    entries = [describe_event(e) for e in events]
    for flag in flags:
        entries.extend(describe_flag(flag))
    entries.extend(describe_attempt(a) for a in attempts or ())
    entries.sort(key=lambda e: e.at, reverse=True)
    return entries


def _join(*parts: str) -> str:
    return " · ".join(p for p in parts if p)


def _summary(data: Any) -> str:
    if not data:
        return ""
    text = json.dumps(data, separators=(",", ":"), sort_keys=True, default=str)
    return text if len(text) <= 160 else text[:157] + "..."
