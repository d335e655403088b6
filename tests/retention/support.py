"""Rows of the three pruned tables, aged relative to a fixed ``NOW``."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from adminpanel.models import DispatchSkip, Flag, Gateway, Session, TimelineEvent

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
_seq = itertools.count(1)


def make_session(key: str = "agent:main:telegram:direct:alice") -> Session:
    gateway, _ = Gateway.objects.get_or_create(name="sim")
    return Session.objects.create(gateway=gateway, session_key=key)


def timeline_events(session: Session, age: timedelta, count: int = 1) -> list[TimelineEvent]:
    at = NOW - age
    return TimelineEvent.objects.bulk_create(
        TimelineEvent(
            gateway=session.gateway,
            session=session,
            boot_id="boot-1",
            seq=next(_seq),
            kind="run.phase",
            at=at,
            received_at=at,
        )
        for _ in range(count)
    )


def skips(session: Session, age: timedelta, count: int = 1) -> list[DispatchSkip]:
    return DispatchSkip.objects.bulk_create(
        DispatchSkip(
            gateway=session.gateway, session=session, kind="skip", reason="busy", at=NOW - age
        )
        for _ in range(count)
    )


def flag(session: Session, code: str, raised_age: timedelta, cleared_age: timedelta | None) -> Flag:
    return Flag.objects.create(
        session=session,
        code=code,
        severity="warning",
        why="held too long",
        since=NOW - raised_age,
        raised_at=NOW - raised_age,
        cleared_at=None if cleared_age is None else NOW - cleared_age,
    )
