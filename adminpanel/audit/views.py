"""The audit log's pages and exports, and the attempt query the JSON API shares.

An *attempt* is an intent row joined with its outcome row (``AuditEntry``):
every list, export and API answer is one record per attempt, newest first.
``attempts(filters)`` and ``attempt_json(intent)`` are the reusable parts;
the views only validate the URL, page and render.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast

from asgiref.sync import sync_to_async
from django import forms
from django.core.handlers.asgi import ASGIRequest
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from adminpanel.actions import ACTIONS, LABELS
from adminpanel.forms import CursorField, StrictQueryForm, decode_cursor, encode_cursor
from adminpanel.models import AuditEntry, Gateway
from adminpanel.roles import VIEW, VIEW_AUDIT, permission_required
from adminpanel.views import _bad_request, _common

PAGE_SIZE = 50
# An export stops after this many attempts and says so (narrow the dates for the rest).
EXPORT_CAP = 10_000
EXPORT_CHUNK = 500
PENDING = "pending"
PENDING_DETAIL = "pending — no outcome recorded"
RESULTS = (*AuditEntry.RESULTS, PENDING)

audit_required = permission_required(VIEW, VIEW_AUDIT)


# Filters ----------------------------------------------------------------------------------


class AuditFilterForm(StrictQueryForm):
    """The audit page's and exports' filters; they live in the URL like every list's."""

    actor = forms.CharField(required=False, max_length=150, label="Actor")
    action = forms.CharField(required=False, max_length=24, label="Action")
    result = forms.ChoiceField(
        required=False, choices=[("", "any"), *((r, r) for r in RESULTS)], label="Result"
    )
    gateway = forms.SlugField(required=False, max_length=64, label="Gateway")
    q = forms.CharField(required=False, max_length=200, label="Session key contains")
    session = forms.IntegerField(required=False, min_value=1, label="Session id")
    batch = forms.CharField(required=False, max_length=40, label="Bulk batch")
    attempt = forms.IntegerField(required=False, min_value=1, label="Audit entry")
    since = forms.DateField(required=False, label="Since (date)")
    until = forms.DateField(required=False, label="Until (date, inclusive)")

    def clean_action(self) -> str:
        action = str(self.cleaned_data.get("action") or "").replace("-", "_")
        if action and action not in ACTIONS:
            raise forms.ValidationError(f"Not an action: {action!r}; one of {', '.join(ACTIONS)}.")
        return action

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and until < since:
            raise forms.ValidationError(
                f"until ({until}) is before since ({since}); swap them or drop one."
            )
        return cleaned


class AuditPageForm(AuditFilterForm):
    """The page adds where the next page starts."""

    after = CursorField()


def _day_start(day: date | datetime) -> datetime:
    if isinstance(day, datetime):
        return day if timezone.is_aware(day) else timezone.make_aware(day)
    return timezone.make_aware(datetime.combine(day, time.min))


def attempts(filters: Mapping[str, Any]) -> QuerySet[AuditEntry]:
    """Attempts (intents with their outcome joined) matching ``filters``, newest first.

    ``filters`` are ``AuditFilterForm``'s cleaned data (missing keys mean no
    filter); ``since``/``until`` are dates in the configured time zone (a
    ``datetime`` is taken as the exact bound), ``until`` inclusive of its day.
    One query however many rows are read.
    """
    rows = AuditEntry.objects.filter(kind="intent").select_related("outcome")
    exact = {"actor": "actor", "action": "action", "gateway": "gateway", "batch": "batch",
             "session": "session_pk", "attempt": "pk"}  # fmt: skip
    for name, column in exact.items():
        if filters.get(name):
            rows = rows.filter(**{column: filters[name]})
    result = filters.get("result")
    if result == PENDING:
        rows = rows.filter(outcome__isnull=True)
    elif result:
        rows = rows.filter(outcome__result=result)
    if filters.get("q"):
        rows = rows.filter(session_key__contains=filters["q"])
    if filters.get("since"):
        rows = rows.filter(at__gte=_day_start(filters["since"]))
    until = filters.get("until")
    if until:
        end = until if isinstance(until, datetime) else until + timedelta(days=1)
        rows = rows.filter(at__lt=_day_start(end))
    # (kind, at) is indexed: newest first without sorting the whole log.
    return rows.order_by("-at", "-pk")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def attempts_page(
    rows: QuerySet[AuditEntry], after: list[int | str] | None, size: int
) -> tuple[list[AuditEntry], str | None]:
    """One keyset page of ``attempts(...)`` after the cursor ``after`` (decoded, or None);
    the page and the next page's cursor (None on the last page). ``ValueError`` when
    ``after`` is not one of these cursors. One query, however deep the page.
    """
    if after:
        if len(after) != 2 or not all(isinstance(v, int) for v in after):
            raise ValueError("not an audit cursor")
        at = _EPOCH + timedelta(microseconds=int(after[0]))
        rows = rows.filter(at__lte=at).exclude(at=at, pk__gte=after[1])
    page = list(rows[: size + 1])
    if len(page) <= size:
        return page, None
    last = page[size - 1]
    micros = (last.at - _EPOCH) // timedelta(microseconds=1)
    return page[:size], encode_cursor([micros, last.pk])


def outcome_of(intent: AuditEntry) -> AuditEntry | None:
    """The intent's outcome row, or None while (or because) it has none."""
    try:
        return intent.outcome  # type: ignore[no-any-return]
    except AuditEntry.DoesNotExist:
        return None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def attempt_json(intent: AuditEntry) -> dict[str, Any]:
    """One attempt as JSON-safe data: every field of both rows, and both hashes."""
    done = outcome_of(intent)
    return {
        "audit_id": intent.pk,
        "seq": intent.seq,
        "at": _iso(intent.at),
        "actor": intent.actor,
        "actor_kind": intent.actor_kind,
        "action": intent.action,
        "gateway": intent.gateway,
        "session_key": intent.session_key,
        "session_pk": intent.session_pk,
        "expect_run_id": intent.expect_run_id,
        "reason": intent.reason,
        "batch": intent.batch,
        "dry_run": intent.dry_run,
        "request_id": intent.request_id,
        "client_addr": intent.client_addr,
        "once_key": intent.once_key,
        "state_before": intent.state_before,
        "planned_calls": intent.planned_calls,
        "result": done.result if done else PENDING,
        "detail": done.detail if done else PENDING_DETAIL,
        "finished_at": _iso(done.at) if done else None,
        "duration_ms": done.duration_ms if done else None,
        "state_after": done.state_after if done else None,
        "calls": done.calls if done else [],
        "outcome_id": done.pk if done else None,
        "outcome_seq": done.seq if done else None,
        "intent_hash": intent.hash,
        "outcome_hash": done.hash if done else None,
    }


def actor_label(intent: AuditEntry) -> str:
    """``operator``, or ``policy stale-locks`` for an automatic recovery."""
    return f"policy {intent.actor}" if intent.actor_kind == "policy" else intent.actor


def action_label(action: str) -> str:
    return LABELS.get(action, action.replace("_", " ")).lower()


# The page ---------------------------------------------------------------------------------


@audit_required
def audit_log(request: HttpRequest) -> HttpResponse:
    form = AuditPageForm(request.GET)
    if not form.is_valid():
        return _bad_request(request, form)
    filters = form.cleaned_data
    cursor = filters.get("after")
    try:
        page, next_cursor = attempts_page(attempts(filters), cursor, PAGE_SIZE)
    except ValueError:
        form.add_error("after", "Not a cursor of this page; start from page one.")
        return _bad_request(request, form)
    query = request.GET.copy()
    query.pop("after", None)
    export_query = query.urlencode()
    context = {
        "form": form,
        "filters": filters,
        "rows": [_row(intent) for intent in page],
        "next_cursor": next_cursor,
        "is_first": cursor is None,
        "query": export_query,
        "actions": [(a, LABELS[a]) for a in ACTIONS],
        "results": RESULTS,
        "gateway_names": list(Gateway.objects.order_by("name").values_list("name", flat=True)),
        "export_cap": EXPORT_CAP,
    }
    return render(request, "adminpanel/audit.html", _common(context))


def _row(intent: AuditEntry) -> dict[str, Any]:
    done = outcome_of(intent)
    return {
        "intent": intent,
        "outcome": done,
        "actor": actor_label(intent),
        "action": action_label(intent.action),
        "result": done.result if done else PENDING,
        "detail": done.detail if done else PENDING_DETAIL,
        "seen_run": intent.expect_run_id or intent.state_before.get("run_id", ""),
    }


@audit_required
def audit_entry(request: HttpRequest, pk: int) -> HttpResponse:
    form = StrictQueryForm(request.GET)
    if not form.is_valid():
        return _bad_request(request, form)
    entry = get_object_or_404(AuditEntry.objects.select_related("outcome", "intent"), pk=pk)
    if entry.kind == "outcome" and entry.intent_id is not None:
        return redirect("audit_entry", pk=entry.intent_id)  # one page per attempt
    row = _row(entry)
    context = {
        **row,
        "state_rows": _state_rows(entry.state_before, row["outcome"]),
        "calls": _calls(entry, row["outcome"]),
    }
    return render(request, "adminpanel/audit_entry.html", _common(context))


def _state_rows(before: Mapping[str, Any], done: AuditEntry | None) -> list[dict[str, Any]]:
    """The state before and after side by side, one row per key, changes marked."""
    after: Mapping[str, Any] = done.state_after if done else {}
    keys = list(before) + [k for k in after if k not in before]
    return [
        {
            "key": key,
            "before": before.get(key),
            "after": after.get(key) if done else None,
            "changed": done is not None and before.get(key) != after.get(key),
        }
        for key in keys
    ]


def _calls(intent: AuditEntry, done: AuditEntry | None) -> dict[str, Any]:
    made = []
    for call in (done.calls if done else []) or []:
        if not isinstance(call, dict):
            continue
        made.append(
            {
                "command": call.get("command") or call.get("method") or "?",
                "params": call.get("params"),
                "answer": call.get("answer"),
                "error": call.get("error", ""),
            }
        )
    planned = [
        {
            "method": call.get("method") or call.get("command") or "?",
            "params": call.get("params"),
            "note": call.get("note", ""),
        }
        for call in intent.planned_calls or []
        if isinstance(call, dict)
    ]
    return {"planned": planned, "made": made}


# Exports ----------------------------------------------------------------------------------

CSV_COLUMNS = (
    "audit_id", "seq", "at", "actor", "actor_kind", "action", "gateway", "session_key",
    "session_pk", "expect_run_id", "reason", "batch", "dry_run", "request_id", "client_addr",
    "once_key", "result", "detail", "finished_at", "duration_ms", "outcome_id", "outcome_seq",
    "state_before", "planned_calls", "state_after", "calls", "intent_hash", "outcome_hash",
)  # fmt: skip
# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _capped_note(cap: int) -> str:
    return (
        f"export capped at {cap} attempts (the newest); "
        "narrow the filters (since/until) to export the rest"
    )


def _export_rows(filters: Mapping[str, Any], cap: int) -> Iterator[dict[str, Any]]:
    """Up to ``cap`` attempts as JSON, read in keyset chunks (bounded memory and queries)."""
    rows = attempts(filters)
    after: list[int | str] | None = None
    sent = 0
    while sent < cap:
        size = min(EXPORT_CHUNK, cap - sent)
        chunk, cursor = attempts_page(rows, after, size)
        for intent in chunk:
            yield attempt_json(intent)
        sent += len(chunk)
        if cursor is None:
            return
        after = decode_cursor(cursor)


def _csv_cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        value = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_chunks(filters: Mapping[str, Any], cap: int, capped: bool) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for record in _export_rows(filters, cap):
        writer.writerow([_csv_cell(record[c]) for c in CSV_COLUMNS])
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if capped:
        writer.writerow([f"# {_capped_note(cap)}"])
    yield buffer.getvalue()


def json_chunks(filters: Mapping[str, Any], cap: int, capped: bool) -> Iterator[str]:
    yield '{"attempts": ['
    count = 0
    for record in _export_rows(filters, cap):
        yield ("," if count else "") + "\n" + json.dumps(record, ensure_ascii=False, default=str)
        count += 1
    tail = {"count": count, "capped": capped, "note": _capped_note(cap) if capped else ""}
    yield "\n], " + json.dumps(tail)[1:] + "\n"


async def _async_chunks(chunks: Iterator[str]) -> AsyncIterator[str]:
    """Serve a database-reading iterator under ASGI without buffering it whole."""

    def step() -> str | None:
        return next(chunks, None)

    while True:
        part = await sync_to_async(step)()
        if part is None:
            return
        yield part


def _export(request: HttpRequest, fmt: str) -> HttpResponseBase:
    form = AuditFilterForm(request.GET)
    if not form.is_valid():
        return _bad_request(request, form)
    filters = form.cleaned_data
    capped = attempts(filters)[EXPORT_CAP : EXPORT_CAP + 1].exists()
    if fmt == "csv":
        chunks, content_type = csv_chunks(filters, EXPORT_CAP, capped), "text/csv; charset=utf-8"
    else:
        chunks, content_type = json_chunks(filters, EXPORT_CAP, capped), "application/json"
    content: Iterator[str] | AsyncIterator[str] = chunks
    if isinstance(request, ASGIRequest):
        content = _async_chunks(chunks)
    response = StreamingHttpResponse(content, content_type=content_type)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="runboard-audit-{stamp}.{fmt}"'
    response["X-Runboard-Export-Capped"] = str(EXPORT_CAP) if capped else "no"
    return response


@audit_required
def export_csv(request: HttpRequest) -> HttpResponse:
    # roles.View is typed for HttpResponse; Django serves a streaming response the same way.
    return cast(HttpResponse, _export(request, "csv"))


@audit_required
def export_json(request: HttpRequest) -> HttpResponse:
    return cast(HttpResponse, _export(request, "json"))
