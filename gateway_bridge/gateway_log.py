"""The gateway's log lines (``logs.tail``): parse a line, and name the signatures
observer mode reads (dispatch skips, follow-up drain failures, forced settle,
stale takeover, stuck-session diagnostics), as openclaw-internals.md §5 lists them.

Pure functions over text: the translator decides what each signature means.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

SKIP_RE = re.compile(
    r"skipped reply operation admission for (?P<key>\S+?); reason=(?P<reason>[\w-]+)"
)
DRAIN_RE = re.compile(
    r"followup queue drain failed for (?P<key>\S+): (?P<error>[A-Za-z_]\w*): (?P<message>.*)$"
)
SETTLE_RE = re.compile(
    r"reply run terminal settle: forced release sessionKey=(?P<key>\S+)(?P<rest>.*)$"
)
STALE_RE = re.compile(
    r"reply run stale takeover: forced release sessionKey=(?P<key>\S+)"
    r"(?:.*?\breason=(?P<reason>\S+))?"
)
DIAGNOSTIC_RE = re.compile(r"\b(?P<kind>stuck|stalled) session: (?P<rest>.*)$")
FIELD_RE = re.compile(r"(?P<name>\w+)=(?P<value>\S+)")


@dataclass(frozen=True, slots=True)
class LogLine:
    """One ``logs.tail`` line: its text and the gateway's timestamp (None if absent)."""

    text: str
    at: float | None
    level: str = ""


@dataclass(frozen=True, slots=True)
class SkipLine:
    """A message was not admitted: ``reason`` as the gateway names it."""

    session_key: str
    reason: str


@dataclass(frozen=True, slots=True)
class DrainFailedLine:
    """A queued follow-up could not be drained."""

    session_key: str
    error: str
    message: str


@dataclass(frozen=True, slots=True)
class ForcedReleaseLine:
    """The registry released a lock itself: ``how`` is forced_settle or stale_takeover."""

    session_key: str
    how: str
    detail: str


@dataclass(frozen=True, slots=True)
class SessionDiagnostic:
    """A ``[diagnostic] stuck session`` / ``stalled session`` line.

    No normalized event carries these yet; the bridge logs them as warnings.
    """

    session_key: str
    kind: str  # stuck | stalled
    fields: dict[str, str]
    text: str
    at: float


Signature = SkipLine | DrainFailedLine | ForcedReleaseLine | SessionDiagnostic


def parse_log_line(raw: object) -> LogLine | None:
    """The text and time of a ``logs.tail`` line (tslog JSON or plain text)."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    try:
        obj = json.loads(raw)
    except ValueError:
        return LogLine(raw.strip(), None)
    if not isinstance(obj, dict):
        return LogLine(raw.strip(), None)
    text = obj.get("message")
    if not isinstance(text, str) or not text:
        text = positional_text(obj)
    meta = obj.get("_meta")
    level = meta.get("logLevelName") if isinstance(meta, dict) else None
    stamp = obj.get("time") or (meta.get("date") if isinstance(meta, dict) else None)
    return LogLine(text, iso_seconds(stamp), level if isinstance(level, str) else "")


def signature(text: str, at: float) -> Signature | None:
    """The known signature a line's text carries, if any."""
    if m := SKIP_RE.search(text):
        return SkipLine(m["key"], m["reason"])
    if m := DRAIN_RE.search(text):
        return DrainFailedLine(m["key"], m["error"], m["message"])
    if m := SETTLE_RE.search(text):
        return ForcedReleaseLine(m["key"], "forced_settle", m["rest"].strip())
    if m := STALE_RE.search(text):
        return ForcedReleaseLine(m["key"], "stale_takeover", m["reason"] or "")
    if m := DIAGNOSTIC_RE.search(text):
        fields = {f["name"]: f["value"] for f in FIELD_RE.finditer(m["rest"])}
        key = fields.get("sessionKey", "")
        if key:
            return SessionDiagnostic(key, m["kind"], fields, text, at)
    return None


def positional_text(obj: dict[str, Any]) -> str:
    """tslog puts the logger name under "0" and the arguments under "1", "2", …"""
    parts = []
    for index in range(1, 10):
        value = obj.get(str(index))
        if isinstance(value, str):
            parts.append(value)
    return " ".join(parts)


def iso_seconds(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
