"""The audit page: one row per attempt, newest first, keyset-paged, filters in the URL."""

from __future__ import annotations

from datetime import UTC, datetime
from html import unescape

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from adminpanel.audit import views as audit_views
from tests.audit.support import KEY, attempt, attempt_ids, audit_clock, make_session, next_link
from tests.support.users import make_user

pytestmark = pytest.mark.django_db


def page(client: Client, query: str = "") -> str:
    response = client.get(f"/audit/{query}")
    assert response.status_code == 200, response.content.decode()[-2000:]
    return response.content.decode()


def test_anonymous_users_are_sent_to_log_in(client: Client) -> None:
    response = client.get("/audit/?result=error")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/audit/")


def test_a_user_without_the_audit_permission_is_refused(client: Client) -> None:
    make_user("nobody", "pw", role=None)
    client.login(username="nobody", password="pw")
    for url in ("/audit/", "/audit/export.csv", "/audit/export.json"):
        response = client.get(url)
        assert response.status_code == 403
        assert "adminpanel.view_auditentry" in response.content.decode()


def test_each_attempt_is_one_row_with_every_column(viewer: Client) -> None:
    session = make_session()
    intent, _ = attempt(
        session_pk=session.pk, reason="user waited 5 min", request_id="req-abc",
        client_addr="10.1.2.3", duration_ms=87,
    )  # fmt: skip
    html = page(viewer)
    assert attempt_ids(html) == [intent.pk]
    row = unescape(html.split(f'id="attempt-{intent.pk}"', 1)[1].split("</tr>", 1)[0])
    for text in ("operator", "force-clear", "sim", KEY, "run-1", "user waited 5 min",
                 "result-success", "Lock of run run-1 cleared.", "87 ms", "req-abc", "10.1.2.3",
                 f'href="/sessions/{session.pk}/"', f'href="/audit/{intent.pk}/"'):  # fmt: skip
        assert text in row, text


def test_rows_are_newest_first_and_a_crash_leaves_a_pending_row(viewer: Client) -> None:
    first, _ = attempt(reason="first")
    crashed, _ = attempt(reason="crashed", result=None)
    last, _ = attempt(reason="last", result="conflict", detail="run run-2 holds it now")
    html = page(viewer)
    assert attempt_ids(html) == [last.pk, crashed.pk, first.pk]
    crashed_row = html.split(f'id="attempt-{crashed.pk}"', 1)[1].split("</tr>", 1)[0]
    assert "result-pending" in crashed_row
    assert "pending — no outcome recorded" in crashed_row


def test_a_policy_is_shown_as_the_actor_by_its_name(viewer: Client) -> None:
    attempt(actor="stale-locks", actor_kind="policy", dry_run=True)
    html = page(viewer)
    assert "policy stale-locks" in html
    assert "dry run" in html


def test_paging_visits_every_attempt_once_newest_first(
    viewer: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_views, "PAGE_SIZE", 3)
    intents = [attempt(reason=f"r{n}", actor="admin" if n % 2 else "operator")[0]
               for n in range(8)]  # fmt: skip
    pages, url = [], "/audit/"
    while url:
        html = page(viewer, url.removeprefix("/audit/"))
        pages.append(attempt_ids(html))
        url = next_link(html) or ""
    assert [len(p) for p in pages] == [3, 3, 2]
    assert [i for p in pages for i in p] == [i.pk for i in reversed(intents)]
    # The filters survive paging.
    operator_pages, url = [], "/audit/?actor=operator"
    while url:
        html = page(viewer, url.removeprefix("/audit/"))
        operator_pages.append(attempt_ids(html))
        url = next_link(html) or ""
    assert [i for p in operator_pages for i in p] == [i.pk for i in reversed(intents[::2])]


def test_paging_is_exact_when_attempts_share_a_timestamp(
    viewer: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_views, "PAGE_SIZE", 2)
    with audit_clock(monkeypatch, datetime(2026, 11, 1, 12, 0, tzinfo=UTC)):
        same = [attempt(reason=f"same {n}")[0].pk for n in range(5)]
    later = attempt(reason="later")[0].pk
    seen, url = [], "/audit/"
    while url:
        html = page(viewer, url.removeprefix("/audit/"))
        seen.extend(attempt_ids(html))
        url = next_link(html) or ""
    assert seen == [later, *reversed(same)]


def test_the_query_count_does_not_grow_with_the_rows_shown(viewer: Client) -> None:
    session = make_session()
    for n in range(3):
        attempt(session_pk=session.pk, reason=f"r{n}", result=None if n == 1 else "success")
    viewer.get("/audit/")  # warm the session and permission caches alike
    with CaptureQueriesContext(connection) as few:
        page(viewer)
    for n in range(30):
        attempt(session_pk=session.pk, reason=f"more {n}", result=None if n % 4 else "error")
    with CaptureQueriesContext(connection) as many:
        html = page(viewer)
    assert len(attempt_ids(html)) == 33
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("actor=admin", ["admin-clear"]),
        ("action=requeue", ["requeue"]),
        ("action=force-clear", ["operator-clear", "admin-clear", "crash"]),
        ("result=conflict", ["admin-clear"]),
        ("result=pending", ["crash"]),
        ("gateway=sim-eu", ["requeue"]),
        ("q=bob", ["admin-clear"]),
        ("actor=operator&result=success", ["operator-clear"]),
    ],
)
def test_each_filter_narrows_the_rows(viewer: Client, query: str, expected: list[str]) -> None:
    reasons = {}
    for reason, fields in {
        "operator-clear": {},
        "requeue": {"action": "requeue", "gateway": "sim-eu", "result": "noop"},
        "admin-clear": {"actor": "admin", "session_key": "agent:main:slack:bob",
                        "result": "conflict"},
        "crash": {"result": None},
    }.items():  # fmt: skip
        intent, _ = attempt(reason=reason, **fields)  # type: ignore[arg-type]
        reasons[intent.pk] = reason
    html = page(viewer, f"?{query}")
    shown = [reasons[pk] for pk in attempt_ids(html)]
    assert sorted(shown) == sorted(expected)


def test_since_and_until_are_whole_days_until_inclusive(
    viewer: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = {}
    for day in (1, 2, 3):
        with audit_clock(monkeypatch, datetime(2026, 11, day, 23, 59, tzinfo=UTC)):
            ids[day] = attempt(reason=f"day {day}")[0].pk
    assert attempt_ids(page(viewer, "?since=2026-11-02")) == [ids[3], ids[2]]
    assert attempt_ids(page(viewer, "?until=2026-11-02")) == [ids[2], ids[1]]
    assert attempt_ids(page(viewer, "?since=2026-11-02&until=2026-11-02")) == [ids[2]]


def test_one_attempt_and_one_session_can_be_picked_by_id(viewer: Client) -> None:
    session = make_session()
    mine, _ = attempt(session_pk=session.pk)
    other, _ = attempt(session_key="agent:other", session_pk=session.pk + 1)
    assert attempt_ids(page(viewer, f"?attempt={other.pk}")) == [other.pk]
    assert attempt_ids(page(viewer, f"?session={session.pk}")) == [mine.pk]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?result=maybe", "result: Select a valid choice"),
        ("?action=explode", "Not an action: 'explode'"),
        ("?since=yesterday", "since: Enter a valid date"),
        ("?since=2026-11-03&amp;until=2026-11-01".replace("&amp;", "&"), "is before since"),
        ("?who=me", "Unknown parameter 'who'"),
        ("?after=%21%21", "Not a page cursor"),
        ("?after=WzVd", "Not a cursor of this page"),  # [5]: the shape of another list's
        ("?attempt=0", "attempt: Ensure this value is greater than or equal to 1"),
    ],
)
def test_a_bad_filter_is_a_400_that_says_what_is_wrong(
    viewer: Client, query: str, message: str
) -> None:
    for url in ("/audit/", "/audit/export.csv", "/audit/export.json"):
        if "after" in query and "export" in url:
            continue  # the exports have no pages
        response = viewer.get(url + query)
        assert response.status_code == 400, url
        assert message in unescape(response.content.decode()), url


def test_the_header_links_to_the_audit_page(viewer: Client) -> None:
    assert '<a href="/audit/">Audit</a>' in page(viewer)
