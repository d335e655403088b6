"""Template filters for Runboard's pages."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from django import template
from django.urls import get_script_prefix, get_urlconf, reverse

register = template.Library()


@register.filter
def age(since: datetime | None, now: datetime) -> str:
    """Seconds-precise, compact age: ``42 s``, ``3 min 12 s``, ``2 h 5 min``, ``3 d 4 h``."""
    if since is None:
        return "\u2013"  # an en dash: no value
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


@register.filter
def get(mapping: Mapping[str, Any], key: str) -> Any:
    """``{{ sorts|get:sort }}``: a dict's value by a variable key; blank when absent."""
    return mapping.get(key, "")


@register.filter
def iso(moment: datetime | None) -> str:
    """ISO 8601 for ``<time datetime>`` (what live.js reads); cheaper than ``date:'c'``."""
    return "" if moment is None else moment.isoformat()


@register.filter
def utc(moment: datetime | None, precision: str = "s") -> str:
    """``2026-11-22 12:00:05`` in UTC (the pages label it so); ``utc:'ms'`` adds milliseconds."""
    if moment is None:
        return "\u2013"
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{moment.microsecond // 1000:03d}" if precision == "ms" else text


@register.filter
def jsonish(value: Any) -> str:
    """Compact JSON for showing call parameters in a dialog.

    Keys sorted: PostgreSQL's jsonb keeps its own key order, so the same entry
    reads the same on either database.
    """
    return json.dumps(
        value, separators=(", ", ": "), ensure_ascii=False, default=str, sort_keys=True
    )


@register.filter
def until(moment: datetime | None, now: datetime) -> str:
    """Time left until ``moment`` in the ``age`` format ("0 s" once it has passed)."""
    if moment is None:
        return ""
    return age(now, moment) if moment > now else "0 s"


# The sessions table links every row to its detail page and, while locked, to its
# clear action: three ``{% url %}`` reversals a row were a third of the row's
# render time, on the path of every live push. These filters reverse once per
# (prefix, urlconf, row) and reuse it.
CLEAR_ACTION = "clear-and-requeue"


@lru_cache(maxsize=8192)
def _reverse(prefix: str, urlconf: str | None, name: str, args: tuple[Any, ...]) -> str:
    return reverse(name, urlconf=urlconf, args=args)


def _url(name: str, *args: Any) -> str:
    return _reverse(get_script_prefix(), get_urlconf(), name, args)


@register.filter
def detail_url(pk: int) -> str:
    """``{{ s.pk|detail_url }}``: the session's page, as ``{% url 'session_detail' pk %}``."""
    return _url("session_detail", pk)


@register.filter
def clear_url(session: Any) -> str:
    """The session's force-clear dialog for the run that holds its lock (``?run=``)."""
    return f"{_url('session_action', session.pk, CLEAR_ACTION)}?run={quote(session.run_id or '')}"
