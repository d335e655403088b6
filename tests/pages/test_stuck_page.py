"""The stuck tab: only flagged sessions, worst first; its count in every page's header."""

from __future__ import annotations

import re

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from adminpanel.models import Session
from gateway_bridge.events import GatewayStarted, LockAcquired, LockReleased, RunEnded
from tests.pages.support import T0, Stream, ingest, row_keys
from tests.support.streams import locked_sessions


def three_stuck_one_fine(stream: Stream) -> None:
    ingest(
        [
            stream(GatewayStarted, T0),
            stream(LockAcquired, T0 + 10, session_key="agent:main:a:direct:young", run_id="a"),
            stream(LockAcquired, T0 + 5, session_key="agent:main:a:direct:old", run_id="b"),
            stream(LockAcquired, T0 + 20, session_key="agent:main:a:direct:leak", run_id="c"),
            stream(
                RunEnded,
                T0 + 30,
                session_key="agent:main:a:direct:leak",
                run_id="c",
                result="aborted",
            ),
            stream(LockAcquired, T0 + 1, session_key="agent:main:a:direct:fine", run_id="d"),
            stream(LockReleased, T0 + 2, session_key="agent:main:a:direct:fine", run_id="d"),
        ]
    )


def test_the_stuck_tab_lists_critical_first_then_the_oldest_flag(viewer: Client) -> None:
    three_stuck_one_fine(Stream())
    keys = row_keys(viewer.get("/stuck/").content.decode())
    assert keys == [
        "agent:main:a:direct:leak",
        "agent:main:a:direct:old",
        "agent:main:a:direct:young",
    ]


def test_the_stuck_tab_takes_the_sessions_filters(viewer: Client) -> None:
    three_stuck_one_fine(Stream())
    keys = row_keys(viewer.get("/stuck/", {"q": "old"}).content.decode())
    assert keys == ["agent:main:a:direct:old"]


def test_the_stuck_tab_refuses_a_sort_it_does_not_have(viewer: Client) -> None:
    response = viewer.get("/stuck/", {"sort": "key"})
    assert response.status_code == 400
    assert "Unknown parameter &#x27;sort&#x27;" in response.content.decode()


def test_nothing_stuck_says_so(viewer: Client) -> None:
    assert "Nothing is stuck." in viewer.get("/stuck/").content.decode()


def test_the_stuck_count_is_in_the_header_of_every_page(viewer: Client) -> None:
    three_stuck_one_fine(Stream())
    session = Session.objects.get(session_key="agent:main:a:direct:leak")
    for path in ["/", "/stuck/", "/warnings/", "/gateways/", f"/sessions/{session.pk}/"]:
        html = viewer.get(path).content.decode()
        assert re.search(r'<span id="stuck-count" class="count">3</span>', html), path


def test_the_stuck_tab_query_count_does_not_grow_with_rows(viewer: Client) -> None:
    ingest(locked_sessions(Stream("gw-a"), 2, leaked=2))
    with CaptureQueriesContext(connection) as few:
        viewer.get("/stuck/")
    ingest(locked_sessions(Stream("gw-b"), 45, leaked=45))
    with CaptureQueriesContext(connection) as many:
        html = viewer.get("/stuck/").content.decode()
    assert len(row_keys(html)) == 47
    assert len(many) == len(few)
