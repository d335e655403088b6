"""Pushes changed session rows to every viewer, once per change, after commit.

Ingest (and the detect tick) report which sessions they changed; the
``Broadcaster`` collects those keys and flushes them at once, or under load
at most every ``interval_s`` on average (a burst is one message; a busy row
goes out at most every ``row_interval_s``; news, and a row that was quiet,
at once).
A flush renders the rows with the same partial the page uses
(``adminpanel/session_row.html``, with ``oob`` set) plus the header's
stuck count, and sends the HTML once to the ``sessions`` group. Every
consumer forwards that one string: the database work per flush is three
queries (``session_rows.rows_for_keys`` and the stuck count) whatever the
number of rows or viewers, and none at all while nobody watches.

``note`` is called from ingest's thread after its transaction committed;
``run`` is the flusher on the event loop; rendering happens on a thread (and
database connection) of its own.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog
from asgiref.sync import sync_to_async
from channels.layers import BaseChannelLayer, get_channel_layer
from django.db import DatabaseError, connection, connections
from django.template.loader import get_template
from django.utils import timezone

from adminpanel.live.layers import group_has_members
from adminpanel.session_rows import SessionKey, rows_for_keys, stuck_count

log = structlog.get_logger(__name__)

GROUP = "sessions"
MESSAGE_TYPE = "sessions.changed"
# A flush renders at most this many rows; more changed sessions than that at
# once (a snapshot reconcile, a gateway restart) is a resync: clients re-fetch.
MAX_ROWS = 500


def render_changes(keys: Iterable[SessionKey]) -> tuple[str, int]:
    """One HTML string of out-of-band rows plus the stuck count; returns (html, rows).

    The rows and the count come from the very templates the pages include,
    with ``oob`` set so each element is an out-of-band swap by its id.
    """
    sessions = rows_for_keys(keys)
    now = timezone.now()
    row = get_template("adminpanel/session_row.html")
    parts = [row.render({"s": s, "now": now, "oob": True}).strip() for s in sessions]
    parts.append(_stuck_count())
    return "".join(parts), len(sessions)


def render_resync() -> str:
    """Too many rows changed at once: tell clients to re-fetch their table instead."""
    return f'<div id="live-resync" hx-swap-oob="true" hidden></div>{_stuck_count()}'


def _stuck_count() -> str:
    count = stuck_count()
    return get_template("adminpanel/stuck_count.html").render({"stuck_count": count, "oob": True})


class TokenBucket:
    """Token bucket: ``wait`` says how long until a flush may go, ``take`` spends one."""

    def __init__(self, *, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.at = float(burst), 0.0

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def wait(self, now: float) -> float:
        self._refill(now)
        missing = 1 - self.tokens
        return missing / self.rate if missing > 1e-9 else 0.0

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1


class Broadcaster:
    """Coalesces changed session keys and sends them to the group.

    Each row is throttled on its leading edge: a row that has been quiet for
    ``quiet_after_s`` goes out at once (a lock appearing, a flag raised on a
    lock that sat still), while a busy row is sent at most every
    ``row_interval_s`` and its changes meanwhile coalesce. *News* is treated
    as a quiet row whatever its row's interval: a lock taken or let go, a run
    ended, a skip, a flag raised or cleared (what ingest and the rules report
    as ``news``) — a running turn's phases and activity are the churn.

    Flushes are paced by two token buckets. Busy rows wait for the paced
    bucket: under load at most one flush per ``interval_s`` on average, and
    every change that arrives meanwhile joins it (a burst of changes is one
    message). News and quiet rows instead go at once, spending from a prompt
    bucket of ``prompt_rate`` flushes a second, so they do not queue behind
    the pace; the busy rows that are due by then ride along, and that flush
    spends the pace's token if there is one (a busy gateway's news then
    carries its churn, and the paced flushes all but stop: fewer messages,
    each a little bigger). With the prompt bucket empty, news waits for its
    next token or the paced flush, whichever comes first. Either way
    ``burst`` flushes may follow each other at once after a rest, and only a
    flush with a row to send spends a token.

    Why 250 ms: the news goes alone by the prompt bucket, so the pace only
    delays the churn of busy rows, which ``row_interval_s`` already holds to
    four updates a second; each flush costs a render, one send per viewer and
    a swap in every browser (measurements: docs/notes/live.md).

    Why 35 prompt flushes a second: under a busy gateway the news never stops,
    so a lock waits for the bucket's next token, up to ``1 / prompt_rate``.
    At 10 that wait was half the push's latency. With one relay per web
    process (``relay.py``) a flush costs a worker one receive and a write per
    viewer, so more flushes are affordable; past about 35 the two cores of the
    fanout bench run out and every stage slows (measured at 10, 25, 35 and 50:
    docs/notes/fanout.md).
    """

    def __init__(
        self,
        *,
        interval_s: float = 0.25,
        row_interval_s: float = 0.25,
        quiet_after_s: float = 1.0,
        prompt_rate: float = 35.0,
        layer: BaseChannelLayer | None = None,
        group: str = GROUP,
        max_rows: int = MAX_ROWS,
        own_thread: bool = True,
        burst: int = 3,
    ) -> None:
        self.interval_s = interval_s
        self.burst = burst
        self.row_interval_s = row_interval_s
        self.quiet_after_s = quiet_after_s
        self.prompt_rate = prompt_rate
        self.group = group
        self.max_rows = max_rows
        self._layer = layer
        self._pending: set[SessionKey] = set()
        self._news: set[SessionKey] = set()  # pending rows that carry news
        self._sent_at: dict[SessionKey, float] = {}
        self._next_due: float | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        # Rendering reads committed rows on its own thread (its own connection), so
        # it need not wait for ingest's next transaction on the bridge's thread.
        # ``own_thread=False`` renders on the caller's thread (inside its transaction).
        self._executor: ThreadPoolExecutor | None = None
        self._render = self._on_thread(render_changes, own_thread)
        self._render_resync = self._on_thread(render_resync, own_thread)
        self.messages = 0

    def _on_thread[T](self, render: Callable[..., T], own: bool) -> Callable[..., Any]:
        if not own:
            return sync_to_async(render, thread_sensitive=True)

        def fresh(*args: Any) -> T:
            # A long-lived connection of its own (no per-render connect); one that
            # failed is dropped and the next flush connects afresh.
            try:
                return render(*args)
            except DatabaseError:
                connection.close()
                raise

        async def on_own_thread(*args: Any) -> T:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="broadcast")
            return await sync_to_async(fresh, thread_sensitive=False, executor=self._executor)(
                *args
            )

        return on_own_thread

    @property
    def holding(self) -> bool:
        """Whether the running loop holds pending rows for a later flush (an interval, the pace)."""
        return self._next_due is not None

    async def close(self) -> None:
        """Close the render thread and its database connection."""
        executor, self._executor = self._executor, None
        if executor is not None:
            try:
                await asyncio.wrap_future(executor.submit(connections.close_all))
            finally:
                executor.shutdown(wait=False)

    def note(self, keys: Iterable[SessionKey], *, news: Iterable[SessionKey] = ()) -> None:
        """Record committed changes; safe to call from any thread.

        ``news``: those of ``keys`` whose change an operator watches for; they go
        out like quiet rows, not held to their row's interval.
        """
        keys = set(keys)
        if not keys:
            return
        with self._lock:
            self._pending |= keys
            self._news |= keys.intersection(news)
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            loop.call_soon_threadsafe(wake.set)

    def _due(self, now: float) -> float | None:
        """When the first pending row may go out (at or before ``now``: at once); None: none."""
        with self._lock:
            pending = list(self._pending)
            if self._news:
                return now
        if not pending:
            return None
        sent_at, interval = self._sent_at, self.row_interval_s
        due = None
        for key in pending:
            at = sent_at.get(key)
            if at is None or at + interval <= now:
                return now
            due = at + interval if due is None else min(due, at + interval)
        return due

    def _quiet_pending(self, now: float) -> bool:
        """Whether a pending row carries news or has not been sent for ``quiet_after_s``."""
        with self._lock:
            if self._news:
                return True
            pending = list(self._pending)
        sent_at, quiet_after = self._sent_at, self.quiet_after_s
        return any((at := sent_at.get(k)) is None or at + quiet_after <= now for k in pending)

    def _take_ready(self, now: float) -> set[SessionKey]:
        """Pending keys whose row may be sent now (news, and rows past their interval);
        the rest stay pending until due."""
        remembered = now - max(self.row_interval_s, self.quiet_after_s)
        self._sent_at = sent_at = {k: at for k, at in self._sent_at.items() if at > remembered}
        horizon = now - self.row_interval_s
        with self._lock:
            news, self._news = self._news, set()
            held = {k for k in self._pending - news if sent_at.get(k, horizon) > horizon}
            ready, self._pending = self._pending - held, held
        due = [max(now, sent_at[k] + self.row_interval_s) for k in held]
        self._next_due = min(due) if due else None
        for key in ready:
            sent_at[key] = now
        return ready

    async def flush(self) -> bool:
        """Render and send the rows that are due; False when nothing was sent."""
        keys = self._take_ready(time.monotonic())
        if not keys:
            return False
        layer = self._layer or get_channel_layer()
        # Nobody watches: render nothing (a viewer who connects later loads the page).
        if layer is None or not await group_has_members(layer, self.group):
            return False
        message: dict[str, Any]
        if len(keys) > self.max_rows:
            html = await self._render_resync()
            message = {"type": MESSAGE_TYPE, "html": html, "rows": 0, "resync": True}
            rows = 0
        else:
            html, rows = await self._render(keys)
            # Plain strings and ints only: the in-memory layer deep-copies the message
            # once per viewer.
            message = {"type": MESSAGE_TYPE, "html": html, "rows": rows}
        await layer.group_send(self.group, message)
        self.messages += 1
        log.debug("sessions_broadcast", sessions=len(keys), rows=rows, size=len(html))
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Flush changes until ``stop`` is set."""
        self._loop = asyncio.get_running_loop()
        self._wake = wake = asyncio.Event()
        wake.set()
        stopping = asyncio.ensure_future(stop.wait())
        paced = TokenBucket(rate=1 / self.interval_s, burst=self.burst)
        prompt = TokenBucket(rate=self.prompt_rate, burst=self.burst)
        try:
            while not stop.is_set():
                timeout = None
                if self._next_due is not None:
                    timeout = max(0.0, self._next_due - time.monotonic())
                waking = asyncio.ensure_future(wake.wait())
                await asyncio.wait(
                    {waking, stopping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                waking.cancel()
                if stop.is_set():
                    break
                wake.clear()
                # Only a flush that has a row to send spends a token: a wake for
                # rows still inside their interval waits for them, not for a bucket.
                now = time.monotonic()
                due = self._due(now)
                if due is None or due > now:
                    self._next_due = due
                    continue
                news_wait = prompt.wait(now) if self._quiet_pending(now) else math.inf
                if news_wait == 0:
                    prompt.take(now)
                    # The busy rows that are due ride along, and stand in for the paced
                    # flush: the pace's token, if there is one, is spent.
                    if paced.wait(now) == 0:
                        paced.take(now)
                elif (wait := paced.wait(now)) > 0:
                    # Changes meanwhile join this flush; a quiet row cuts in first when
                    # the prompt bucket refills before the pace allows the next flush.
                    self._next_due = now + min(wait, news_wait)
                    continue
                else:
                    paced.take(now)
                try:
                    await self.flush()
                except Exception as exc:  # one failed flush must not end the broadcasts
                    log.warning("sessions_broadcast_failed", error=repr(exc))
        finally:
            stopping.cancel()
            self._loop = None
            self._wake = None
            await self.close()
