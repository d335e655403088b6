"""A session's timeline shows each action attempt on it, linked to its audit entry."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import unescape

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from adminpanel.models import TimelineEvent
from tests.audit.support import attempt, audit_clock, make_session

pytestmark = pytest.mark.django_db


def timeline(client: Client, pk: int) -> list[str]:
    response = client.get(f"/sessions/{pk}/")
    assert response.status_code == 200, response.content.decode()[-2000:]
    html = response.content.decode()
    section = html.split('<ol class="timeline">', 1)[1].split("</ol>", 1)[0]
    items = re.findall(r"<li class=\"tl [^\"]*\">(.*?)</li>", section, re.S)
    return [unescape(re.sub(r"\s+", " ", item)).strip() for item in items]


def test_an_attempt_appears_at_its_time_linked_to_its_audit_entry(
    viewer: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = make_session()
    for minute, kind in ((0, "lock_acquired"), (10, "run_activity")):
        TimelineEvent.objects.create(
            gateway=session.gateway, session=session, boot_id="b", kind=kind,
            at=datetime(2026, 11, 1, 12, minute, tzinfo=UTC),
            received_at=datetime(2026, 11, 1, 12, minute, tzinfo=UTC), run_id="run-1",
        )  # fmt: skip
    with audit_clock(monkeypatch, datetime(2026, 11, 1, 12, 5, tzinfo=UTC)):
        intent, _ = attempt(session_pk=session.pk, reason="user waited 5 min")
    lines = timeline(viewer, session.pk)
    assert len(lines) == 3
    assert "Progress" in lines[0] and "Lock acquired" in lines[2]  # newest first
    middle = lines[1]
    assert "Force-clear by operator: user waited 5 min → success" in middle
    assert f'<a href="/audit/{intent.pk}/">' in middle
    assert "2026-11-01 12:05:00" in middle
    assert "Lock of run run-1 cleared." in middle


def test_a_policy_attempt_and_one_with_no_outcome_read_as_such(viewer: Client) -> None:
    session = make_session()
    attempt(session_pk=session.pk, actor="stale-locks", actor_kind="policy",
            action="clear_and_requeue", reason="terminal but held 30 s")  # fmt: skip
    attempt(session_pk=session.pk, reason="gateway restarting", result=None)
    lines = timeline(viewer, session.pk)
    pending = "Force-clear by operator: gateway restarting → pending — no outcome recorded"
    policy = "Clear and requeue by policy stale-locks: terminal but held 30 s → success"
    assert pending in lines[0]
    assert policy in lines[1]


def test_attempts_on_other_sessions_stay_out(viewer: Client) -> None:
    session = make_session()
    other = make_session(key="agent:main:telegram:direct:bob")
    attempt(session_pk=other.pk, session_key=other.session_key, reason="bob's")
    assert timeline(viewer, session.pk) == []
    html = viewer.get(f"/sessions/{session.pk}/").content.decode()
    assert f'href="/audit/?session={session.pk}"' in html


def test_the_session_page_query_count_does_not_grow_with_its_attempts(viewer: Client) -> None:
    session = make_session()
    attempt(session_pk=session.pk)
    viewer.get(f"/sessions/{session.pk}/")
    with CaptureQueriesContext(connection) as few:
        assert len(timeline(viewer, session.pk)) == 1
    for n in range(20):
        attempt(session_pk=session.pk, reason=f"r{n}", result=None if n % 3 else "noop")
    with CaptureQueriesContext(connection) as many:
        assert len(timeline(viewer, session.pk)) == 21
    assert len(many) == len(few)
