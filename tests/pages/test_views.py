"""The server-rendered pages, filled through ingest exactly as the bridge fills them."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from adminpanel.models import Session
from gateway_bridge.events import (
    WaiterAdded,
)
from tests.support.streams import T0, Stream, ingest, locked_sessions
from tests.support.users import make_user


@pytest.fixture
def viewer(db: None) -> Client:
    make_user("viewer", "pw-viewer-1")
    client = Client()
    client.login(username="viewer", password="pw-viewer-1")
    return client


@pytest.mark.parametrize("path", ["/", "/stuck/", "/warnings/", "/gateways/", "/sessions/1/"])
def test_pages_need_a_login(db: None, path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_the_sessions_page_lists_sessions_with_their_flags_and_why(viewer: Client) -> None:
    ingest(locked_sessions(Stream(), 3, leaked=1))
    page = viewer.get("/").content.decode()
    assert "agent:main:telegram:direct:0" in page
    assert "agent:main:telegram:direct:2" in page
    assert 'class="flag critical"' in page
    assert "still holds the session&#x27;s lock" in page


def test_the_stuck_count_is_in_the_header(viewer: Client) -> None:
    ingest(locked_sessions(Stream(), 3, leaked=2))
    response = viewer.get("/gateways/")
    assert response.context["stuck_count"] == 2


def test_flagged_only_shows_just_the_flagged_sessions(viewer: Client) -> None:
    ingest(locked_sessions(Stream(), 4, leaked=1))
    response = viewer.get("/", {"flagged": "1"})
    assert [s.session_key for s in response.context["page"]] == ["agent:main:telegram:direct:0"]


def test_filters_narrow_by_gateway_and_key_text(viewer: Client) -> None:
    ingest(locked_sessions(Stream("gw-a"), 2))
    ingest(locked_sessions(Stream("gw-b"), 2))
    by_gateway = viewer.get("/", {"gateway": "gw-b"}).context["page"]
    assert {s.gateway.name for s in by_gateway} == {"gw-b"}
    by_text = viewer.get("/", {"q": "direct:1"}).context["page"]
    assert [s.session_key for s in by_text] == ["agent:main:telegram:direct:1"] * 2


def test_the_oldest_lock_comes_first(viewer: Client) -> None:
    ingest(locked_sessions(Stream(), 3))
    keys = [s.session_key for s in viewer.get("/").context["page"]]
    assert keys == [f"agent:main:telegram:direct:{n}" for n in range(3)]


def test_a_bad_filter_is_rejected_with_a_message(viewer: Client) -> None:
    response = viewer.get("/", {"phase": "sleeping"})
    assert response.status_code == 400
    assert "phase: Select a valid choice" in response.content.decode()


def test_the_sessions_page_query_count_does_not_grow_with_rows(viewer: Client) -> None:
    ingest(locked_sessions(Stream("gw-a"), 3, leaked=3))
    with CaptureQueriesContext(connection) as few:
        viewer.get("/")
    ingest(locked_sessions(Stream("gw-b"), 40, leaked=40))
    with CaptureQueriesContext(connection) as many:
        viewer.get("/")
    assert len(many) == len(few)


def test_the_session_page_shows_the_flag_reason_and_the_timeline(viewer: Client) -> None:
    ingest(locked_sessions(Stream(), 1, leaked=1))
    session = Session.objects.get()
    page = viewer.get(f"/sessions/{session.pk}/").content.decode()
    assert "terminal_but_held" in page
    assert "Lock acquired" in page
    assert "Run ended: aborted" in page


def test_the_gateways_page_shows_the_ingest_cursor(viewer: Client) -> None:
    ingest(locked_sessions(Stream(), 2))
    page = viewer.get("/gateways/").content.decode()
    assert "gw-a" in page
    assert "2026.5.28" in page


def test_the_session_page_lists_the_messages_waiting_forever(viewer: Client) -> None:
    stream = Stream()
    key = "agent:main:telegram:direct:0"
    events = [
        *locked_sessions(stream, 1),
        stream(WaiterAdded, T0 + 2, session_key=key, waiter_id="w1", message_preview="hello?"),
    ]
    ingest(iter(events))
    session = Session.objects.get()
    page = viewer.get(f"/sessions/{session.pk}/").content.decode()
    assert "hello?" in page
    assert "waits forever" in page
