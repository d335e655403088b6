"""The audit log's queries: attempts (an intent joined with its outcome), filtered and paged.

An *attempt* is an intent row joined with its outcome row (``AuditEntry``):
every list, export and API answer is one record per attempt, newest first.
The audit pages, their exports and the JSON API all read them here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils import timezone

from adminpanel.actions import ACTIONS, LABELS
from adminpanel.forms import StrictQueryForm, encode_cursor
from adminpanel.models import AuditEntry
from adminpanel.session_rows import EPOCH

PENDING = "pending"
PENDING_DETAIL = "pending — no outcome recorded"
RESULTS = (*AuditEntry.RESULTS, PENDING)

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
        at = EPOCH + timedelta(microseconds=int(after[0]))
        rows = rows.filter(at__lte=at).exclude(at=at, pk__gte=after[1])
    page = list(rows[: size + 1])
    if len(page) <= size:
        return page, None
    last = page[size - 1]
    micros = (last.at - EPOCH) // timedelta(microseconds=1)
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


# One attempt as a flat record: the export columns, in order (``attempt_json``'s keys).
CSV_COLUMNS = (
    "audit_id", "seq", "at", "actor", "actor_kind", "action", "gateway", "session_key",
    "session_pk", "expect_run_id", "reason", "batch", "dry_run", "request_id", "client_addr",
    "once_key", "result", "detail", "finished_at", "duration_ms", "outcome_id", "outcome_seq",
    "state_before", "planned_calls", "state_after", "calls", "intent_hash", "outcome_hash",
)  # fmt: skip
