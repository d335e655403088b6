"""The warnings page: the dispatch-skip ledger by session and reason, errors by error."""

from __future__ import annotations

import time

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from adminpanel.models import Session
from gateway_bridge.events import (
    DispatchSkipped,
    FollowupDrainFailed,
    GatewayStarted,
    LockAcquired,
    LockReleased,
    RegistryEvent,
)
from tests.pages.support import Stream, ingest

A = "agent:main:telegram:direct:a"
B = "agent:main:telegram:direct:b"


def ledger(stream: Stream, t0: float, *, sessions: int = 2) -> list[RegistryEvent]:
    events: list[RegistryEvent] = [stream(GatewayStarted, t0)]
    for n in range(sessions):
        key = A if n == 0 else B if n == 1 else f"agent:main:telegram:direct:{n}"
        events.append(stream(LockAcquired, t0 + 1, session_key=key, run_id=f"hold-{n}"))
        for i in range(3):
            events.append(
                stream(
                    DispatchSkipped,
                    t0 + 2 + i,
                    session_key=key,
                    reason="active-run",
                    blocking_run_id=f"hold-{n}",
                    message_preview=f"message {i} to {n}",
                )
            )
        events.append(stream(DispatchSkipped, t0 + 9, session_key=key, reason="aborted"))
        events.append(stream(FollowupDrainFailed, t0 + 10, session_key=key, message="already"))
    return events


def test_skips_are_grouped_by_session_and_reason_with_counts_and_the_latest_message(
    viewer: Client,
) -> None:
    t0 = time.time() - 60
    ingest(ledger(Stream(), t0), now=t0 + 20)
    response = viewer.get("/warnings/")
    groups = {(g["latest"].session.session_key, g["reason"]): g for g in response.context["skips"]}
    assert set(groups) == {(A, "active-run"), (A, "aborted"), (B, "active-run"), (B, "aborted")}
    busy = groups[(A, "active-run")]
    assert busy["count"] == 3
    assert abs(busy["first"].timestamp() - (t0 + 2)) < 0.01
    assert abs(busy["last"].timestamp() - (t0 + 4)) < 0.01
    html = response.content.decode()
    assert "message 2 to 0" in html
    assert "message 0 to 0" not in html  # a preview of the latest, not every message


def test_a_skip_links_to_the_run_that_blocked_it_and_says_if_it_still_holds(
    viewer: Client,
) -> None:
    t0 = time.time() - 60
    ingest(ledger(Stream(), t0, sessions=1), now=t0 + 20)
    session = Session.objects.get()
    html = viewer.get("/warnings/").content.decode()
    assert f'href="/sessions/{session.pk}/#run-hold-0"' in html
    assert "still holds the lock" in html


def test_error_signatures_are_grouped_by_error_with_the_sessions_they_hit(viewer: Client) -> None:
    t0 = time.time() - 60
    ingest(ledger(Stream(), t0), now=t0 + 20)
    response = viewer.get("/warnings/")
    [error] = response.context["errors"]
    assert error["reason"] == "ReplyRunAlreadyActiveError"
    assert (error["count"], error["sessions"]) == (2, 2)


def test_the_window_leaves_out_older_warnings(viewer: Client) -> None:
    long_ago = time.time() - 5 * 3600
    ingest(ledger(Stream(), long_ago), now=long_ago + 20)
    response = viewer.get("/warnings/", {"hours": 1})
    assert response.context["skips"] == []
    assert "No dispatch skips in this window." in response.content.decode()
    assert len(viewer.get("/warnings/", {"hours": 6}).context["skips"]) == 4


def test_a_bad_window_is_a_400(viewer: Client) -> None:
    response = viewer.get("/warnings/", {"hours": "ever"})
    assert response.status_code == 400
    assert "hours: Enter a whole number." in response.content.decode()


def test_the_warnings_query_count_does_not_grow_with_the_groups(viewer: Client) -> None:
    t0 = time.time() - 60
    ingest(ledger(Stream("gw-a"), t0, sessions=1), now=t0 + 20)
    with CaptureQueriesContext(connection) as few:
        viewer.get("/warnings/")
    ingest(ledger(Stream("gw-b"), t0, sessions=20), now=t0 + 20)
    with CaptureQueriesContext(connection) as many:
        response = viewer.get("/warnings/")
    assert len(response.context["skips"]) == 42
    assert len(many) == len(few)


def test_locks_the_gateway_released_by_itself_are_grouped_by_how(viewer: Client) -> None:
    t0 = time.time() - 60
    stream = Stream()
    events: list[RegistryEvent] = [stream(GatewayStarted, t0)]
    for n, how in enumerate(["forced_settle", "forced_settle", "stale_takeover", "normal"]):
        key = f"agent:main:telegram:direct:{n}"
        events.append(stream(LockAcquired, t0 + 1, session_key=key, run_id=f"r{n}"))
        events.append(stream(LockReleased, t0 + 2, session_key=key, run_id=f"r{n}", how=how))
    ingest(events, now=t0 + 20)
    response = viewer.get("/warnings/")
    counts = {g["release_how"]: g["count"] for g in response.context["releases"]}
    assert counts == {"forced_settle": 2, "stale_takeover": 1}
    assert "automatic: stale takeover" in response.content.decode()
