"""The sessions page: filters in the URL, sorts, keyset paging, the htmx partial, 400s."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from adminpanel import views
from adminpanel.forms import SORTS
from adminpanel.models import Session
from gateway_bridge.events import (
    GatewayStarted,
    LockAcquired,
    LockReleased,
    RegistryEvent,
    WaiterAdded,
)
from tests.pages.support import T0, Stream, ingest, next_link, row_keys, walk


def mixed(stream: Stream, *, locked: int, idle: int, agent: str = "main") -> list[RegistryEvent]:
    """``locked`` sessions (higher numbers locked earlier), then ``idle`` released ones."""
    events: list[RegistryEvent] = [stream(GatewayStarted, T0, version="2026.5.28")]
    for n in range(locked):
        key = f"agent:{agent}:telegram:direct:L{n}"
        # Later keys locked earlier: the page order must come from the time, not the key.
        at = T0 + 100 - n
        events.append(stream(LockAcquired, at, session_key=key, run_id=f"r-{agent}-{n}"))
        events.extend(
            stream(WaiterAdded, at + 1, session_key=key, waiter_id=f"w{n}-{i}", timeout_ms=1000)
            for i in range(n % 3)
        )
    for n in range(idle):
        key = f"agent:{agent}:slack:channel:I{n}"
        run = f"i-{agent}-{n}"
        events.append(stream(LockAcquired, T0 + 1, session_key=key, run_id=run))
        events.append(stream(LockReleased, T0 + 2, session_key=key, run_id=run))
    return events


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views, "PAGE_SIZE", 3)


def test_paging_by_lock_age_visits_every_session_once_oldest_lock_first(
    viewer: Client, small_pages: None
) -> None:
    ingest(mixed(Stream(), locked=7, idle=4))
    pages = walk(viewer, "/")
    assert [len(p) for p in pages] == [3, 3, 3, 2]
    keys = [k for page in pages for k in page]
    locked = [f"agent:main:telegram:direct:L{n}" for n in reversed(range(7))]
    idle_newest_first = [
        s.session_key for s in Session.objects.filter(locked=False).order_by("-pk")
    ]
    assert keys == locked + idle_newest_first


@pytest.mark.parametrize("sort", list(SORTS))
def test_every_sort_pages_through_every_session_exactly_once(
    viewer: Client, small_pages: None, sort: str
) -> None:
    ingest(mixed(Stream(), locked=5, idle=4))
    keys = [k for page in walk(viewer, f"/?sort={sort}") for k in page]
    assert sorted(keys) == sorted(Session.objects.values_list("session_key", flat=True))


def test_newest_lock_first_reverses_the_locked_sessions(viewer: Client) -> None:
    ingest(mixed(Stream(), locked=4, idle=0))
    keys = row_keys(viewer.get("/", {"sort": "-age"}).content.decode())
    assert keys == [f"agent:main:telegram:direct:L{n}" for n in range(4)]


def test_most_waiters_first(viewer: Client) -> None:
    ingest(mixed(Stream(), locked=3, idle=1))
    keys = row_keys(viewer.get("/", {"sort": "waiters"}).content.decode())
    assert keys[:2] == ["agent:main:telegram:direct:L2", "agent:main:telegram:direct:L1"]


def test_the_next_page_link_keeps_the_filters(viewer: Client, small_pages: None) -> None:
    ingest(mixed(Stream("gw-a"), locked=5, idle=0))
    ingest(mixed(Stream("gw-b"), locked=5, idle=0))
    first = viewer.get("/?gateway=gw-b&sort=-age").content.decode()
    url = next_link(first)
    assert url and "gateway=gw-b" in url and "sort=-age" in url
    # Ten sessions stored, five on gw-b: the walk sees only those.
    assert sum(len(p) for p in walk(viewer, "/?gateway=gw-b&sort=-age")) == 5


def test_filters_by_agent_channel_and_phase(viewer: Client) -> None:
    stream = Stream()
    ingest(mixed(stream, locked=2, idle=2, agent="main"))
    ingest(mixed(stream, locked=1, idle=0, agent="ops"))
    by_agent = row_keys(viewer.get("/", {"agent": "ops"}).content.decode())
    assert by_agent == ["agent:ops:telegram:direct:L0"]
    by_channel = row_keys(viewer.get("/", {"channel": "slack", "agent": "main"}).content.decode())
    assert sorted(by_channel) == ["agent:main:slack:channel:I0", "agent:main:slack:channel:I1"]
    by_phase = row_keys(viewer.get("/", {"phase": "queued"}).content.decode())
    assert len(by_phase) == 3


def test_later_pages_seek_instead_of_counting_or_offsetting(
    viewer: Client, small_pages: None
) -> None:
    ingest(mixed(Stream(), locked=7, idle=0))
    url = next_link(viewer.get("/").content.decode())
    assert url
    with CaptureQueriesContext(connection) as queries:
        viewer.get(url)
    sql = " ".join(q["sql"].upper() for q in queries)
    assert " OFFSET " not in sql


def test_the_total_is_bounded_instead_of_counting_the_whole_table(
    viewer: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "COUNT_CAP", 4)
    ingest(mixed(Stream(), locked=6, idle=0))
    assert "More than 4 sessions" in viewer.get("/").content.decode()
    assert "1 session," in viewer.get("/", {"q": "direct:L1"}).content.decode()


def test_an_htmx_request_gets_only_the_table(viewer: Client) -> None:
    ingest(mixed(Stream(), locked=2, idle=0))
    html = viewer.get("/", headers={"HX-Request": "true"}).content.decode()
    assert html.startswith('<div id="sessions-table">')
    assert "<html" not in html
    assert len(row_keys(html)) == 2


def test_a_flag_explains_itself_on_hover_and_to_assistive_technology(viewer: Client) -> None:
    from tests.support.streams import locked_sessions

    ingest(locked_sessions(Stream(), 1, leaked=1))
    html = viewer.get("/").content.decode()
    session = Session.objects.get()
    tip_id = f"why-{session.pk}-terminal_but_held"
    assert f'aria-describedby="{tip_id}"' in html
    assert f'role="tooltip" id="{tip_id}"' in html
    assert 'tabindex="0" title="' in html


def test_lock_age_is_a_machine_readable_time(viewer: Client) -> None:
    ingest(mixed(Stream(), locked=1, idle=0))
    assert '<time datetime="2027-01-15T08:01:40+00:00"' in viewer.get("/").content.decode()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"sort": "colour"}, "sort: Select a valid choice"),
        ({"after": "%%%"}, "after: Not a page cursor"),
        ({"gatway": "gw-a"}, "Unknown parameter &#x27;gatway&#x27;"),
        ({"refresh": "1"}, "refresh: Select a valid choice"),
        ({"q": "x" * 201}, "q: Ensure this value has at most 200 characters"),
    ],
)
def test_a_bad_parameter_answers_400_saying_what_is_wrong(
    viewer: Client, query: dict[str, str], message: str
) -> None:
    response = viewer.get("/", query)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_a_cursor_from_another_sort_is_refused(viewer: Client, small_pages: None) -> None:
    ingest(mixed(Stream(), locked=5, idle=0))
    url = next_link(viewer.get("/", {"sort": "key"}).content.decode())
    assert url
    response = viewer.get(url.replace("sort=key", "sort=age"))
    assert response.status_code == 400
    assert "belongs to another sort" in response.content.decode()


def test_the_query_count_does_not_grow_with_the_rows_shown(viewer: Client) -> None:
    from tests.support.streams import locked_sessions

    ingest(locked_sessions(Stream("gw-a"), 2, leaked=2))
    with CaptureQueriesContext(connection) as few:
        viewer.get("/", {"sort": "waiters"})
    ingest(locked_sessions(Stream("gw-b"), 45, leaked=45))
    with CaptureQueriesContext(connection) as many:
        viewer.get("/", {"sort": "waiters"})
    assert len(many) == len(few)
