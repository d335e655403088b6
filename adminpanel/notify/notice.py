"""What a notice says, and how each kind of channel wants it: plain functions over plain data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.urls import reverse

from adminpanel.models import AuditEntry, Flag

# What an operator should do about each flag (the session page has the buttons).
SUGGESTED = {
    "terminal_but_held": "Force-clear the lock, or clear and requeue for the waiting messages.",
    "no_progress": "Check the run; abort it if it is wedged, or clear and requeue its lock.",
    "unbounded_waiter": "Clear the lock the messages wait behind; they never time out.",
    "skip_burst": "See which messages were skipped and requeue them once the session is free.",
    "alternating_error": "Requeue the lost messages; the gateway build races its follow-up drain.",
    "store_disagrees": "Force-clear the lock the registry still holds; the session looks idle.",
}
DEFAULT_SUGGESTION = "Open the session page and look at its lock and waiting messages."
# An action on the session this long before a flag cleared is taken as what cleared it.
CLEARED_BY_WINDOW = timedelta(minutes=5)
EVENTS = {"raised": "flag_raised", "reminder": "flag_reminder", "cleared": "flag_cleared"}


@dataclass(frozen=True, slots=True)
class Notice:
    kind: str  # raised | reminder | cleared
    gateway: str
    session_key: str
    flag_id: int
    code: str
    severity: str
    why: str
    since: datetime
    raised_at: datetime
    cleared_at: datetime | None
    cleared_by: str  # blank unless kind == "cleared"
    link: str
    suggested_action: str

    @property
    def title(self) -> str:
        where = f"{self.code} on {self.gateway} · {self.session_key}"
        if self.kind == "cleared":
            return f"Resolved: {where}"
        if self.kind == "reminder":
            return f"Still {self.severity}: {where}"
        return f"{self.severity.capitalize()}: {where}"

    def lines(self) -> list[str]:
        lines = [self.why, f"Since {_utc(self.since)} (raised {_utc(self.raised_at)})."]
        if self.kind == "cleared":
            lines.append(f"Resolved at {_utc(self.cleared_at)} by {self.cleared_by}.")
        else:
            lines.append(f"Suggested action: {self.suggested_action}")
        lines.append(f"Session: {self.link}")
        return lines


def _utc(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at else "-"


def build(kind: str, flag: Flag) -> Notice:
    """``flag`` with its session and gateway loaded."""
    session = flag.session
    return Notice(
        kind=kind,
        gateway=session.gateway.name,
        session_key=session.session_key,
        flag_id=flag.pk,
        code=flag.code,
        severity=flag.severity,
        why=flag.why,
        since=flag.since,
        raised_at=flag.raised_at,
        cleared_at=flag.cleared_at,
        cleared_by=cleared_by(flag) if kind == "cleared" else "",
        link=settings.RUNBOARD_PUBLIC_URL.rstrip("/")
        + reverse("session_detail", args=[session.pk]),
        suggested_action=SUGGESTED.get(flag.code, DEFAULT_SUGGESTION),
    )


def cleared_by(flag: Flag) -> str:
    """An operator's or a policy's action on the session just before; else the gateway."""
    if flag.cleared_at is None:
        return ""
    entry = (
        AuditEntry.objects.filter(
            kind="intent",
            session_pk=flag.session_id,
            dry_run=False,
            at__gte=flag.cleared_at - CLEARED_BY_WINDOW,
            at__lte=flag.cleared_at,
        )
        .exclude(outcome__result__in=("error", "conflict"))
        .order_by("-at")
        .first()
    )
    if entry is None:
        return "the gateway itself (the condition ended)"
    who = "recovery policy" if entry.actor_kind == "policy" else "operator"
    return f"{who} {entry.actor} ({entry.action.replace('_', '-')})"


def webhook_payload(n: Notice) -> dict[str, Any]:
    return {
        "event": EVENTS[n.kind],
        "text": n.title,
        "gateway": n.gateway,
        "session_key": n.session_key,
        "session_url": n.link,
        "flag": {
            "id": n.flag_id,
            "code": n.code,
            "severity": n.severity,
            "why": n.why,
            "since": n.since.isoformat(),
            "raised_at": n.raised_at.isoformat(),
            "cleared_at": n.cleared_at.isoformat() if n.cleared_at else None,
        },
        "suggested_action": n.suggested_action,
        "resolved": n.kind == "cleared",
        "resolved_by": n.cleared_by or None,
    }


def slack_payload(n: Notice) -> dict[str, Any]:
    """Slack's incoming-webhook shape: ``text`` for notifications, ``blocks`` for the message."""
    icon = ":white_check_mark:" if n.kind == "cleared" else ":rotating_light:"
    body = "\n".join(_escape(line) for line in n.lines()[:-1])
    return {
        "text": f"{n.title} — {n.link}",
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"{icon} *{_escape(n.title)}*\n{body}"},
            },
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"<{n.link}|Open the session>"}],
            },
        ],
    }


def _escape(text: str) -> str:
    """Slack's mrkdwn needs only these three escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def email_parts(n: Notice) -> tuple[str, str]:
    """(subject, plain-text body)."""
    return f"[Runboard] {n.title}", "\n\n".join(n.lines()) + "\n"
