"""The durable counters move through the real hooks: ingest, actions and the live consumer."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from adminpanel import actions
from adminpanel.detect import Thresholds
from adminpanel.ingest import Ingestor
from adminpanel.models import DispatchSkip, MetricCounter, TimelineEvent
from adminpanel.observability import counters
from adminpanel.observability.viewers import viewer_count
from gateway_bridge.events import DispatchSkipped, FollowupDrainFailed, LockAcquired
from runboard.asgi import application
from tests.ingest.streams import KEY, OTHER, T0, GatewayScript
from tests.observability.support import gateway, samples, scrape_text, session, value
from tests.support.users import make_user


def stored(name: str, **labels: str) -> int | None:
    row = MetricCounter.objects.filter(name=name, labels=counters.label_key(labels)).first()
    return None if row is None else row.value


@pytest.mark.django_db
def test_ingest_counts_applied_events_skips_by_reason_and_keeps_the_lag() -> None:
    g = GatewayScript(name="alpha")
    batch = [
        g.next(LockAcquired, session_key=KEY, run_id="run-1"),
        g.next(DispatchSkipped, session_key=KEY, reason="active-run", blocking_run_id="run-1"),
        g.next(DispatchSkipped, session_key=KEY, reason="active-run", blocking_run_id="run-1"),
        g.next(FollowupDrainFailed, session_key=OTHER, message="a long error text"),
    ]
    first_at = batch[0].at
    ingestor = Ingestor(thresholds=Thresholds(), clock=lambda: first_at + 2.5)

    ingestor.apply(batch)
    ingestor.apply(batch)  # duplicates are not ingested twice

    assert stored("events_ingested", gateway="alpha") == 4
    assert stored("skips", gateway="alpha", reason="active-run") == 2
    assert stored("skips", gateway="alpha", reason="drain_failed") == 1
    assert stored(counters.LAG_NAME, gateway="alpha") == 2_500_000
    scraped = samples(scrape_text())
    assert value(scraped, "runboard_events_ingested_total", gateway="alpha") == 4.0
    assert value(scraped, "runboard_ingest_lag_seconds", gateway="alpha") == 2.5


@pytest.mark.django_db
def test_a_batch_writes_its_counters_and_its_lag_in_one_statement() -> None:
    g = GatewayScript(name="alpha")
    batch = [
        g.next(DispatchSkipped, session_key=KEY, reason="active-run", blocking_run_id="run-1"),
        g.next(FollowupDrainFailed, session_key=OTHER, message="a long error text"),
    ]
    counters.set_value(counters.LAG_NAME, 99, gateway="alpha")
    counters.count("events_ingested", 5, gateway="alpha")

    with CaptureQueriesContext(connection) as queries:
        counters.record_batch("alpha", batch, committed=batch[0].at + 0.5)

    assert len(queries) == 1
    assert stored("events_ingested", gateway="alpha") == 7  # added to
    assert stored("skips", gateway="alpha", reason="active-run") == 1
    assert stored("skips", gateway="alpha", reason="drain_failed") == 1
    assert stored(counters.LAG_NAME, gateway="alpha") == 500_000  # replaced


@pytest.mark.django_db
def test_a_counter_never_goes_back_when_the_rows_it_counted_are_pruned() -> None:
    g = GatewayScript(name="alpha", at=T0)
    ingestor = Ingestor(thresholds=Thresholds(), clock=lambda: T0 + 100)
    ingestor.apply([g.next(DispatchSkipped, session_key=KEY, reason="aborted")])

    DispatchSkip.objects.all().delete()
    TimelineEvent.objects.all().delete()

    assert stored("skips", gateway="alpha", reason="aborted") == 1
    assert stored("events_ingested", gateway="alpha") == 1


@pytest.mark.django_db
def test_a_rolled_back_batch_counts_nothing() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        counters.count("events_ingested", 5, gateway="alpha")
        raise RuntimeError("the batch failed")

    assert stored("events_ingested", gateway="alpha") is None


@pytest.mark.django_db(transaction=True)
def test_concurrent_increments_from_several_threads_are_all_kept() -> None:
    def work() -> None:
        try:
            for _ in range(25):
                counters.count("actions", 1, action="abort", result="success")
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert stored("actions", action="abort", result="success") == 100


@pytest.mark.django_db(transaction=True)
async def test_an_action_outcome_counts_by_action_and_result() -> None:
    def state() -> None:
        gw = gateway("alpha")
        session(gw, KEY, locked_for_s=60)

    await sync_to_async(state)()
    target = actions.Target("alpha", KEY, expect_run_id=f"run-{KEY}")
    wrong = actions.Target("alpha", KEY, expect_run_id="not-the-run")

    await actions.perform(
        "force_clear", target, reason="test", actor=actions.Actor("op"), dry_run=True
    )
    await actions.perform("force_clear", wrong, reason="test", actor=actions.Actor("op"))

    assert await sync_to_async(stored)("actions", action="force_clear", result="noop") == 1
    assert await sync_to_async(stored)("actions", action="force_clear", result="conflict") == 1


@sync_to_async
def viewer_cookie() -> bytes:
    make_user("viewer", "pw-viewer-1")
    client = Client()
    assert client.login(username="viewer", password="pw-viewer-1")
    value = client.cookies[settings.SESSION_COOKIE_NAME].value
    return f"{settings.SESSION_COOKIE_NAME}={value}".encode()


@pytest.mark.django_db(transaction=True)
async def test_a_live_viewer_counts_while_connected_and_not_after() -> None:
    headers: Any = [
        (b"origin", b"http://127.0.0.1"),
        (b"host", b"127.0.0.1"),
        (b"cookie", await viewer_cookie()),
    ]
    first = WebsocketCommunicator(application, "/ws/sessions/", headers=headers)
    second = WebsocketCommunicator(application, "/ws/sessions/", headers=headers)
    assert (await first.connect(timeout=10))[0]
    assert (await second.connect(timeout=10))[0]
    try:
        assert await sync_to_async(viewer_count)() == 2
    finally:
        await first.disconnect()
    assert await sync_to_async(viewer_count)() == 1
    await second.disconnect()

    assert await sync_to_async(viewer_count)() == 0


@pytest.mark.django_db(transaction=True)
async def test_a_refused_viewer_is_never_counted() -> None:
    anonymous = WebsocketCommunicator(
        application, "/ws/sessions/", headers=[(b"origin", b"http://127.0.0.1")]
    )
    connected, _ = await anonymous.connect(timeout=10)
    assert not connected
    await anonymous.disconnect()

    assert await sync_to_async(viewer_count)() == 0
