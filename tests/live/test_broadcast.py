"""The broadcaster: changed rows rendered once, after commit, one message per burst."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils.html import escape

from adminpanel.detect import Thresholds
from adminpanel.ingest import Ingestor
from adminpanel.live.broadcast import GROUP, MESSAGE_TYPE, Broadcaster, TokenBucket, render_changes
from adminpanel.live.memory_layer import InProcessChannelLayer
from adminpanel.models import Flag, Session
from gateway_bridge.events import (
    GatewayStarted,
    LockAcquired,
    LockReleased,
    PhaseChanged,
    RegistryEvent,
    RunEnded,
)

T0 = 1_800_000_000.0
NOW = T0 + 60


class Stream:
    """Registry events of one gateway boot, numbered as the gateway numbers them."""

    def __init__(self, gateway: str = "gw-a") -> None:
        self.gateway = gateway
        self._seq = itertools.count(1)

    def __call__(self, cls: type[RegistryEvent], at: float, **fields: object) -> RegistryEvent:
        return cls(
            gateway=self.gateway, boot_id="boot-1", seq=next(self._seq), at=at, received_at=at,
            **fields,
        )  # fmt: skip


def key(n: int) -> str:
    return f"agent:main:telegram:direct:{n}"


def lock_sessions(count: int, *, leaked: int = 0, gateway: str = "gw-a") -> set[tuple[str, str]]:
    """Ingest ``count`` locked sessions; return what ingest reported as changed."""
    stream = Stream(gateway)
    events = [stream(GatewayStarted, T0, version="2026.5.28", profile="2026.5.28")]
    for n in range(count):
        events.append(stream(LockAcquired, T0 + 1, session_key=key(n), run_id=f"r{n}"))
        if n < leaked:
            events.append(
                stream(RunEnded, T0 + 2, session_key=key(n), run_id=f"r{n}", result="aborted")
            )
    ingestor = Ingestor(thresholds=Thresholds(), clock=lambda: NOW)
    changed = ingestor.apply(events).changed_sessions
    return changed | ingestor.tick(NOW)


def viewers(layer: InProcessChannelLayer, count: int) -> list[str]:
    async def join() -> list[str]:
        names = [await layer.new_channel() for _ in range(count)]
        for name in names:
            await layer.group_add(GROUP, name)
        return names

    return async_to_sync(join)()


SENTINEL = {"type": "test.sentinel"}


def received(layer: InProcessChannelLayer, channel: str) -> list[dict[str, Any]]:
    """Every message waiting on ``channel``: those before a sentinel sent after them."""

    async def drain() -> list[dict[str, Any]]:
        await layer.send(channel, SENTINEL)
        messages = []
        async with asyncio.timeout(10):  # a generous bound, not a timing assertion
            while (message := await layer.receive(channel)) != SENTINEL:
                messages.append(message)
        return messages

    return async_to_sync(drain)()


async def holding(broadcaster: Broadcaster, sent: int) -> None:
    """Wait until the running broadcaster holds what was noted, or sent more than ``sent``."""
    async with asyncio.timeout(10):  # a generous bound, not a timing assertion
        while not broadcaster.holding and broadcaster.messages == sent:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(
    **options: Any,
) -> AsyncIterator[tuple[Broadcaster, Callable[[], Awaitable[str]]]]:
    """A broadcaster running on this loop with one viewer; yields it and the viewer's
    next message's HTML (within a generous bound, not a timing assertion)."""
    layer = InProcessChannelLayer()
    viewer = await layer.new_channel()
    await layer.group_add(GROUP, viewer)
    broadcaster = Broadcaster(layer=layer, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(broadcaster.run(stop))

    async def next_html() -> str:
        async with asyncio.timeout(10):
            return str((await layer.receive(viewer))["html"])

    try:
        yield broadcaster, next_html
    finally:
        stop.set()
        await task


@pytest.mark.django_db
def test_changes_noted_in_several_batches_go_out_as_one_message() -> None:
    layer = InProcessChannelLayer()
    [viewer] = viewers(layer, 1)
    changed = lock_sessions(5)
    broadcaster = Broadcaster(layer=layer, own_thread=False)
    for pair in sorted(changed):
        broadcaster.note([pair])

    assert async_to_sync(broadcaster.flush)() is True
    [message] = received(layer, viewer)

    assert message["type"] == MESSAGE_TYPE
    assert message["rows"] == len(changed)
    for n in range(5):
        assert key(n) in message["html"]


@pytest.mark.django_db
def test_each_changed_row_is_rendered_once_as_an_out_of_band_swap_of_the_page_row() -> None:
    changed = lock_sessions(3)
    html, rows = render_changes(list(changed) * 4)

    assert rows == 3
    assert html.count("<tr ") == 3
    assert html.count('hx-swap-oob="true"') == 3 + 1  # the rows and the stuck count
    assert html.count('<tr id="session-') == 3


@pytest.mark.django_db
def test_the_stuck_count_rides_along_as_an_out_of_band_swap_of_the_header() -> None:
    changed = lock_sessions(3, leaked=2)
    html, _ = render_changes(changed)

    assert re.search(r'<span id="stuck-count"[^>]* hx-swap-oob="true"[^>]*>2</span>', html)


@pytest.mark.django_db
def test_a_flagged_row_carries_its_flag_and_why() -> None:
    lock_sessions(1, leaked=1)
    html, _ = render_changes({("gw-a", key(0))})

    [flag] = Flag.objects.filter(cleared_at__isnull=True)
    assert flag.code in html
    assert escape(flag.why) in html


@pytest.mark.django_db
def test_a_pushed_row_is_the_row_the_page_renders_with_its_active_flags_in_order() -> None:
    from datetime import UTC, datetime

    from django.db.models import Prefetch
    from django.template.loader import get_template
    from django.utils import timezone

    lock_sessions(3, leaked=1)
    session = Session.objects.get(session_key=key(0))
    at = datetime.fromtimestamp(NOW, tz=UTC)
    for code, severity, cleared in (("zz-late", "critical", None), ("aa-gone", "critical", at)):
        Flag.objects.create(
            session=session, code=code, severity=severity, why=f"why <{code}>", since=at,
            raised_at=at, cleared_at=cleared,
        )  # fmt: skip
    pairs = {("gw-a", key(n)) for n in range(3)}

    page_rows = (
        Session.objects.select_related("gateway")
        .prefetch_related(
            Prefetch(
                "flags",
                queryset=Flag.objects.filter(cleared_at__isnull=True).order_by("severity", "code"),
                to_attr="active_flags",
            )
        )
        .filter(session_key__in=[k for _, k in pairs])
        .order_by("pk")
    )
    now = timezone.now()
    row = get_template("adminpanel/session_row.html")
    expected = "".join(row.render({"s": s, "now": now, "oob": True}).strip() for s in page_rows)
    html, rows = render_changes(pairs)

    assert rows == 3
    assert html.startswith(expected)
    assert html.index("zz-late") > 0 and "aa-gone" not in html


@pytest.mark.django_db
def test_sessions_of_other_gateways_with_the_same_key_are_not_mixed_up() -> None:
    lock_sessions(2, gateway="gw-a")
    lock_sessions(1, gateway="gw-b")
    _, rows = render_changes({("gw-b", key(0))})

    assert rows == 1


@pytest.mark.django_db
@pytest.mark.parametrize("rows", [1, 40])
def test_a_flush_takes_three_queries_whatever_the_number_of_rows(rows: int) -> None:
    changed = lock_sessions(rows, leaked=rows // 2)
    layer = InProcessChannelLayer()
    viewers(layer, 1)
    broadcaster = Broadcaster(layer=layer, own_thread=False)
    broadcaster.note(changed)

    with CaptureQueriesContext(connection) as queries:
        async_to_sync(broadcaster.flush)()

    # sessions with their gateway, their active flags, the stuck count
    assert len(queries) == 3


@pytest.mark.django_db
def test_the_database_work_of_a_flush_does_not_grow_with_the_number_of_viewers() -> None:
    changed = lock_sessions(10, leaked=3)
    counts = {}
    for count in (1, 100):
        layer = InProcessChannelLayer()
        channels = viewers(layer, count)
        broadcaster = Broadcaster(layer=layer, own_thread=False)
        broadcaster.note(changed)
        with CaptureQueriesContext(connection) as queries:
            async_to_sync(broadcaster.flush)()
        counts[count] = len(queries)
        htmls = {received(layer, c)[0]["html"] for c in {channels[0], channels[-1]}}
        assert len(htmls) == 1  # every viewer gets the very same string

    assert counts[1] == counts[100]


@pytest.mark.django_db
def test_nothing_is_rendered_while_nobody_watches() -> None:
    changed = lock_sessions(3)
    broadcaster = Broadcaster(layer=InProcessChannelLayer(), own_thread=False)
    broadcaster.note(changed)

    with CaptureQueriesContext(connection) as queries:
        assert async_to_sync(broadcaster.flush)() is False
    assert len(queries) == 0


@pytest.mark.django_db
def test_nothing_is_sent_when_nothing_changed() -> None:
    layer = InProcessChannelLayer()
    [viewer] = viewers(layer, 1)
    broadcaster = Broadcaster(layer=layer, own_thread=False)
    broadcaster.note([])

    assert async_to_sync(broadcaster.flush)() is False
    assert received(layer, viewer) == []


@pytest.mark.django_db
def test_a_busy_row_waits_for_its_interval_while_a_quiet_row_goes_out_at_once() -> None:
    changed = sorted(lock_sessions(2))
    busy, quiet = changed
    layer = InProcessChannelLayer()
    [viewer] = viewers(layer, 1)
    broadcaster = Broadcaster(layer=layer, row_interval_s=3600, own_thread=False)
    broadcaster.note([busy])
    async_to_sync(broadcaster.flush)()
    broadcaster.note([busy, quiet])
    async_to_sync(broadcaster.flush)()

    first, second = received(layer, viewer)
    assert busy[1] in first["html"] and quiet[1] not in first["html"]
    assert quiet[1] in second["html"] and busy[1] not in second["html"]
    assert async_to_sync(broadcaster.flush)() is False  # busy is still waiting


@pytest.mark.django_db
def test_news_on_a_busy_row_goes_out_at_once_while_its_churn_waits_for_the_interval() -> None:
    row, other = sorted(lock_sessions(2))
    layer = InProcessChannelLayer()
    [viewer] = viewers(layer, 1)
    broadcaster = Broadcaster(layer=layer, row_interval_s=3600, own_thread=False)
    broadcaster.note([row, other])
    async_to_sync(broadcaster.flush)()  # both sent: busy for an hour from now
    broadcaster.note([other])  # churn (a phase change): held to its interval
    broadcaster.note([row], news=[row])  # news (its lock let go): not held
    async_to_sync(broadcaster.flush)()

    _, second = received(layer, viewer)
    assert row[1] in second["html"] and other[1] not in second["html"]
    assert async_to_sync(broadcaster.flush)() is False  # the churn still waits
    assert broadcaster._pending == {other}


@pytest.mark.django_db
def test_ingest_reports_a_lock_taken_or_let_go_as_news_and_a_phase_change_as_churn() -> None:
    stream = Stream()
    ingestor = Ingestor(thresholds=Thresholds(), clock=lambda: NOW)
    started = stream(GatewayStarted, T0, version="2026.9.6", profile="2026.9")
    taken = ingestor.apply([started, stream(LockAcquired, T0 + 1, session_key=key(1), run_id="r1")])
    assert taken.news_sessions == taken.changed_sessions == {("gw-a", key(1))}

    phase = stream(PhaseChanged, T0 + 2, session_key=key(1), run_id="r1", phase="streaming")
    churn = ingestor.apply([phase])
    assert churn.changed_sessions == {("gw-a", key(1))} and churn.news_sessions == set()

    ended = ingestor.apply(
        [
            stream(RunEnded, T0 + 3, session_key=key(1), run_id="r1", result="completed"),
            stream(LockReleased, T0 + 3, session_key=key(1), run_id="r1"),
        ]
    )
    assert ended.news_sessions == {("gw-a", key(1))}


@pytest.mark.django_db
def test_more_changed_rows_than_a_message_carries_become_one_resync() -> None:
    changed = lock_sessions(6)
    layer = InProcessChannelLayer()
    [viewer] = viewers(layer, 1)
    broadcaster = Broadcaster(layer=layer, max_rows=5, own_thread=False)
    broadcaster.note(changed)
    async_to_sync(broadcaster.flush)()

    [message] = received(layer, viewer)
    assert message["resync"] is True
    assert 'id="live-resync"' in message["html"]
    assert "<tr" not in message["html"]


@pytest.mark.django_db(transaction=True)
async def test_the_running_broadcaster_sends_a_burst_noted_from_another_thread_once() -> None:
    from asgiref.sync import sync_to_async

    changed = await sync_to_async(lock_sessions)(8)
    async with running(interval_s=0.05) as (broadcaster, next_html):
        note = sync_to_async(broadcaster.note, thread_sensitive=False)
        await asyncio.gather(*(note([pair]) for pair in sorted(changed)))
        html = ""
        while not all(k in html for _, k in changed):
            html += await next_html()
    assert broadcaster.messages <= len(changed)


@pytest.mark.django_db(transaction=True)
async def test_a_row_waiting_for_its_interval_does_not_spend_the_rate_of_a_quiet_row() -> None:
    from asgiref.sync import sync_to_async

    busy, quiet = sorted(await sync_to_async(lock_sessions)(2))
    # Two flushes allowed, then one an hour: a third flush would never come in time.
    async with running(interval_s=3600, burst=2, row_interval_s=3600) as (broadcaster, next_html):
        broadcaster.note([busy])
        assert busy[1] in await next_html()
        broadcaster.note([busy])  # held for its interval: nothing to send yet
        await holding(broadcaster, sent=1)
        broadcaster.note([quiet])  # the sentinel: the next message is the quiet row alone
        html = await next_html()
    assert quiet[1] in html and busy[1] not in html
    assert broadcaster.messages == 2


def test_a_quiet_broadcaster_flushes_at_once_and_a_busy_one_at_the_average_rate() -> None:
    bucket = TokenBucket(rate=10, burst=3)

    for _ in range(3):
        assert bucket.wait(100.0) == 0
        bucket.take(100.0)
    assert bucket.wait(100.0) == pytest.approx(0.1)
    assert bucket.wait(100.05) == pytest.approx(0.05)
    assert bucket.wait(100.1) == 0
    bucket.take(100.1)
    assert bucket.wait(100.1) == pytest.approx(0.1)
    assert bucket.wait(200.0) == 0  # rested: full again
    assert bucket.tokens == 3


@pytest.mark.django_db(transaction=True)
async def test_busy_rows_wait_for_the_pace_but_ride_along_when_a_quiet_row_goes() -> None:
    from asgiref.sync import sync_to_async

    busy, quiet = sorted(await sync_to_async(lock_sessions)(2))
    # One paced flush, then one an hour; a row sent once stays busy for an hour.
    options = {"interval_s": 3600, "burst": 1, "row_interval_s": 0, "quiet_after_s": 3600}
    async with running(**options) as (broadcaster, next_html):
        broadcaster.note([busy])  # never sent: quiet, the prompt bucket (and the pace's token)
        assert busy[1] in await next_html()
        broadcaster.note([busy])  # busy now, and the pace allows no flush for an hour
        await holding(broadcaster, sent=1)
        assert broadcaster.messages == 1
        # The first flush spent the prompt bucket (burst 1): let it refill, as a quiet
        # row's news arriving later would find it.
        await asyncio.sleep(2 / broadcaster.prompt_rate)
        broadcaster.note([quiet])
        html = await next_html()
    # The quiet row did not wait for the hour, and the due busy row rode along with it.
    assert quiet[1] in html and busy[1] in html
    assert broadcaster.messages == 2
    assert broadcaster._pending == set()


@pytest.mark.django_db(transaction=True)
async def test_news_finding_the_prompt_bucket_empty_goes_with_its_next_token_not_the_pace() -> None:
    from asgiref.sync import sync_to_async

    first, news = sorted(await sync_to_async(lock_sessions)(2))
    # One flush from each bucket; then the pace allows one an hour, the prompt bucket
    # one every half second: only the prompt bucket's next token can carry the news.
    options = {"interval_s": 3600, "burst": 1, "prompt_rate": 2, "row_interval_s": 0}
    async with running(**options, quiet_after_s=3600) as (broadcaster, next_html):
        broadcaster.note([first])  # never sent, so quiet: both buckets' tokens
        assert first[1] in await next_html()
        broadcaster.note([news])  # quiet, with both buckets empty
        html = await next_html()
    assert news[1] in html
    assert broadcaster.messages == 2
