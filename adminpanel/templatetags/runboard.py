"""Template filters for Runboard's pages."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from django import template

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
    """Compact JSON for showing call parameters in a dialog."""
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False, default=str)


@register.filter
def until(moment: datetime | None, now: datetime) -> str:
    """Time left until ``moment`` in the ``age`` format ("0 s" once it has passed)."""
    if moment is None:
        return ""
    return age(now, moment) if moment > now else "0 s"
