"""Rows for the notify tests: a session, a flag, a channel; raising and clearing as ingest does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from adminpanel.models import Flag, Gateway, Session
from adminpanel.notify import outbox
from adminpanel.notify.models import NotificationChannel

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEY = "agent:main:telegram:direct:42"


def make_session(gateway: Gateway, key: str = KEY) -> Session:
    return Session.objects.create(gateway=gateway, session_key=key, locked=True, run_id="run-1")


def make_flag(
    session: Session,
    code: str = "terminal_but_held",
    severity: str = "critical",
    at: datetime = NOW,
) -> Flag:
    return Flag.objects.create(
        session=session,
        code=code,
        severity=severity,
        why="Run run-1 ended aborted but still holds the session's lock.",
        since=at - timedelta(seconds=25),
        raised_at=at,
    )


def make_channel(kind: str, url: str = "", name: str = "", **kw: Any) -> NotificationChannel:
    return NotificationChannel.objects.create(name=name or kind, kind=kind, url=url, **kw)


def raise_flag(flag: Flag, at: datetime = NOW) -> None:
    """What ingest's flag writer does once it inserted ``flag``."""
    outbox.flags_changed([(flag.session_id, flag.code)], [], at.timestamp())


def clear_flag(flag: Flag, at: datetime) -> None:
    Flag.objects.filter(pk=flag.pk).update(cleared_at=at)
    outbox.flags_changed([], [flag.pk], at.timestamp())
