"""A session's page: one timeline of everything that happened, relative and absolute times."""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from adminpanel.models import Session, TimelineEvent
from adminpanel.timeline import build_timeline, describe_event
from gateway_bridge.events import (
    DispatchSkipped,
    FollowupDrainFailed,
    GatewayStarted,
    LockAcquired,
    LockReleased,
    PhaseChanged,
    RegistryEvent,
    RunEnded,
    WaiterAdded,
)
from tests.pages.support import T0, Stream, ingest

KEY = "agent:main:telegram:direct:7"
AT = datetime.fromtimestamp(T0, UTC)


def a_leak_healed_by_the_gateway(stream: Stream) -> list[RegistryEvent]:
    return [
        stream(GatewayStarted, T0),
        stream(LockAcquired, T0 + 1, session_key=KEY, run_id="run-1", message_preview="hi"),
        stream(PhaseChanged, T0 + 2, session_key=KEY, run_id="run-1", phase="running"),
        stream(
            WaiterAdded, T0 + 3, session_key=KEY, waiter_id="w1", message_preview="still there?"
        ),
        stream(
            DispatchSkipped, T0 + 4, session_key=KEY, reason="active-run", blocking_run_id="run-1"
        ),
        stream(FollowupDrainFailed, T0 + 5, session_key=KEY, message="Reply run already active"),
        stream(RunEnded, T0 + 6, session_key=KEY, run_id="run-1", result="aborted"),
        stream(LockReleased, T0 + 66, session_key=KEY, run_id="run-1", how="forced_settle"),
    ]


def test_the_timeline_tells_the_whole_story_newest_first(viewer: Client) -> None:
    stream = Stream()
    events = a_leak_healed_by_the_gateway(stream)
    ingest(events[:-1], now=T0 + 20)  # the leak is flagged before the gateway heals it
    ingest(events[-1:], now=T0 + 70)
    session = Session.objects.get()
    html = viewer.get(f"/sessions/{session.pk}/").content.decode()
    titles = [
        "Lock released (forced_settle)",
        "Flag raised: terminal_but_held (critical)",
        "Run ended: aborted",
        "Follow-up drain failed: ReplyRunAlreadyActiveError",
        "Dispatch skipped (active-run)",
        "Message waiting for the lock",
        "Phase → running",
        "Lock acquired",
    ]
    positions = [html.index(t) for t in titles]
    assert positions == sorted(positions)
    assert "automatic: forced release after a terminal result" in html
    assert "no timeout: waits forever" in html
    assert 'class="tl tl-recovery"' in html


def test_each_timeline_line_has_a_relative_and_an_absolute_time(viewer: Client) -> None:
    ingest(a_leak_healed_by_the_gateway(Stream())[:2])
    session = Session.objects.get()
    html = viewer.get(f"/sessions/{session.pk}/").content.decode()
    assert '<time datetime="2027-01-15T08:00:01+00:00"' in html
    assert '<span class="abs">2027-01-15 08:00:01</span>' in html


def test_a_release_is_a_recovery_only_when_something_forced_it() -> None:
    def released(how: str) -> str:
        event = TimelineEvent(kind="lock_released", at=AT, data={"how": how}, run_id="r")
        return describe_event(event).category

    assert released("normal") == "lock"
    assert released("stale_takeover") == "recovery"
    assert released("force_clear") == "recovery"


def test_an_unknown_event_kind_still_shows_up() -> None:
    entry = build_timeline([TimelineEvent(kind="brand_new_thing", at=AT, data={"x": 1})], [])[0]
    assert entry.title == "Brand new thing"
    assert entry.detail == '{"x":1}'


def test_a_long_timeline_is_cut_with_a_link_to_more(viewer: Client) -> None:
    stream = Stream()
    events = [
        stream(GatewayStarted, T0),
        stream(LockAcquired, T0 + 1, session_key=KEY, run_id="run-1"),
        *(
            stream(PhaseChanged, T0 + 2 + n, session_key=KEY, run_id="run-1", phase="running")
            for n in range(12)
        ),
    ]
    ingest(events)
    session = Session.objects.get()
    html = viewer.get(f"/sessions/{session.pk}/", {"limit": 5}).content.decode()
    assert html.count('<li class="tl tl-') == 5
    assert "?limit=10#timeline" in html


def test_a_bad_limit_is_a_400(viewer: Client) -> None:
    ingest(a_leak_healed_by_the_gateway(Stream())[:2])
    session = Session.objects.get()
    response = viewer.get(f"/sessions/{session.pk}/", {"limit": "0"})
    assert response.status_code == 400
    assert "limit: Ensure this value is greater than or equal to 1" in response.content.decode()


def test_an_unknown_session_is_a_404(viewer: Client) -> None:
    assert viewer.get("/sessions/999999/").status_code == 404


def test_the_session_page_query_count_does_not_grow_with_the_timeline(viewer: Client) -> None:
    stream = Stream()
    ingest(a_leak_healed_by_the_gateway(stream), now=T0 + 20)
    session = Session.objects.get()
    with CaptureQueriesContext(connection) as few:
        viewer.get(f"/sessions/{session.pk}/")
    more = [
        stream(LockAcquired, T0 + 100 + n, session_key=KEY, run_id=f"again-{n}") for n in range(30)
    ]
    ingest(more, now=T0 + 200)
    with CaptureQueriesContext(connection) as many:
        viewer.get(f"/sessions/{session.pk}/")
    assert len(many) == len(few)
