"""Rows at known times for the chart tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from adminpanel.models import DispatchSkip, Flag, Gateway, Run, Session, TimelineEvent

NOW = datetime(2026, 12, 1, 12, 30, 20, tzinfo=UTC)


def gateway_with_session(name: str = "gw-eu") -> tuple[Gateway, Session]:
    gateway = Gateway.objects.create(name=name, status="connected")
    session = Session.objects.create(gateway=gateway, session_key=f"agent:main:{name}:direct:1")
    return gateway, session


def flag(session: Session, raised: datetime, cleared: datetime | None = None) -> Flag:
    return Flag.objects.create(
        session=session,
        code="no_progress" if cleared is None else "skip_burst",
        severity="warning",
        why="-",
        since=raised,
        raised_at=raised,
        cleared_at=cleared,
    )


def skip(session: Session, at: datetime) -> None:
    DispatchSkip.objects.create(gateway=session.gateway, session=session, kind="skip", at=at)


def event(gateway: Gateway, at: datetime, seq: int) -> None:
    TimelineEvent.objects.create(
        gateway=gateway, boot_id="b", seq=seq, kind="lock_acquired", at=at, received_at=at
    )


def run(session: Session, run_id: str, started: datetime, released: datetime | None = None) -> None:
    Run.objects.create(
        gateway=session.gateway,
        session=session,
        run_id=run_id,
        started_at=started,
        released_at=released,
    )


def minutes_ago(n: float) -> datetime:
    return NOW - timedelta(minutes=n)
