"""The audit log's pages and exports. Thin: validate the URL, page, render or stream.

The attempts they show are read by ``audit.queries`` (the JSON API reads
them there too).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from adminpanel.actions import ACTIONS, LABELS
from adminpanel.audit.queries import (
    CSV_COLUMNS,
    PENDING,
    PENDING_DETAIL,
    RESULTS,
    AuditFilterForm,
    action_label,
    actor_label,
    attempt_json,
    attempts,
    attempts_page,
    outcome_of,
)
from adminpanel.forms import CursorField, StrictQueryForm, decode_cursor
from adminpanel.http import bad_request, page_context
from adminpanel.models import AuditEntry, Gateway
from adminpanel.roles import VIEW, VIEW_AUDIT, permission_required

PAGE_SIZE = 50
# An export stops after this many attempts and says so (narrow the dates for the rest).
EXPORT_CAP = 10_000
EXPORT_CHUNK = 500

audit_required = permission_required(VIEW, VIEW_AUDIT)


class AuditPageForm(AuditFilterForm):
    """The page adds where the next page starts."""

    after = CursorField()


# The page ---------------------------------------------------------------------------------


@audit_required
def audit_log(request: HttpRequest) -> HttpResponse:
    form = AuditPageForm(request.GET)
    if not form.is_valid():
        return bad_request(request, form)
    filters = form.cleaned_data
    cursor = filters.get("after")
    try:
        page, next_cursor = attempts_page(attempts(filters), cursor, PAGE_SIZE)
    except ValueError:
        form.add_error("after", "Not a cursor of this page; start from page one.")
        return bad_request(request, form)
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
    return render(request, "adminpanel/audit.html", page_context(context))


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
        return bad_request(request, form)
    entry = get_object_or_404(AuditEntry.objects.select_related("outcome", "intent"), pk=pk)
    if entry.kind == "outcome" and entry.intent_id is not None:
        return redirect("audit_entry", pk=entry.intent_id)  # one page per attempt
    row = _row(entry)
    context = {
        **row,
        "state_rows": _state_rows(entry.state_before, row["outcome"]),
        "calls": _calls(entry, row["outcome"]),
    }
    return render(request, "adminpanel/audit_entry.html", page_context(context))


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
        return bad_request(request, form)
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
