"""Observer mode's loop: read a stock gateway's events, poll what they do not give.

The bridge reads ``agent``/``chat``/``sessions.changed`` events as they come,
and polls ``sessions.list`` (paged) and ``logs.tail`` (from a cursor) every
``poll_s``, sooner (but not more often than ``min_poll_s``) after a run
ends; the translator turns all of it into the normalized events. Commands fall
back to what a stock gateway offers: force-clear aborts the run with
``chat.abort``, requeue re-sends with ``chat.send`` and the idempotency keys;
both say so in their results.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from typing import Any

import structlog

from gateway_bridge import frames
from gateway_bridge.client import GatewayClient, Hello
from gateway_bridge.errors import GatewayRejected, GatewayTimeout, ProtocolViolation
from gateway_bridge.events import RegistryEvent, SnapshotEntry
from gateway_bridge.feed import EventQueue, Link, Marker, QueueItem, ends
from gateway_bridge.observer.translator import ObserverTranslator, waiter_timeout_ms_for
from gateway_bridge.results import ForceClearResult, RequeueResult

log = structlog.get_logger(__name__)

# sessions.list pages read per poll (real OpenClaw pages by 100).
MAX_PAGES = 50
PAGE_SIZE = 500
# logs.tail pages read per poll; what is left is read at the next poll.
LOG_PAGES = 10
# When sessions.changed events carry whole rows, sessions.list is only a safety net.
ROWS_SLOWDOWN = 5
# Gateway events observer mode reads (plugin mode needs none of them).
OBSERVED_EVENTS = frozenset({"agent", "chat", "sessions.changed", "shutdown"})
ABORT_FALLBACK = "chat.abort"
SEND_FALLBACK = "chat.send"
ABORT_FALLBACK_DETAIL = (
    "Observer mode (no companion plugin): the run was aborted with chat.abort instead of "
    "clearing its registry entry. Waiting messages are then admitted; on builds that leak "
    "aborted runs (2026.5.x) the entry can stay held until the gateway restarts."
)


class ObserverMode:
    """Infers one gateway's registry across its connections; its command fallbacks.

    One translator per gateway process (its bootId) for this bridge, so a
    reconnect continues the numbering instead of looking like a gateway
    restart to the store; a new bridge gets a boot id of its own.
    """

    name = "observer"

    def __init__(
        self,
        link: Link,
        *,
        poll_s: float = 3.0,
        min_poll_s: float = 0.5,
        log_limit: int = 500,
        activity_s: float = 1.0,
    ) -> None:
        self.link = link
        self.gateway = link.gateway
        self.poll_s = poll_s
        self.min_poll_s = min(min_poll_s, poll_s)
        self.log_limit = log_limit
        self.activity_s = activity_s
        self.instance = uuid.uuid4().hex[:12]
        self.translator: ObserverTranslator | None = None
        self.gateway_boot = ""
        self.log_cursor: int | None = None
        self.logs_readable = True

    # --- the loop --------------------------------------------------------------------

    async def serve(self, client: GatewayClient, hello: Hello, queue: EventQueue) -> None:
        """Infer the registry from events and polls until the connection closes or stop().

        A gateway whose ``sessions.changed`` events carry whole rows (2026.9)
        gets its ``sessions.list`` read ``ROWS_SLOWDOWN`` times less often.
        """
        translator = self.translator_for(hello)
        link = self.link
        if hello.has_method("sessions.subscribe"):
            # Real OpenClaw sends sessions.changed only to subscribers.
            with contextlib.suppress(GatewayRejected, GatewayTimeout):
                await link.unless_stopped(client.call("sessions.subscribe", {}))
        await self.resync(client, translator, queue, load=True)
        self.logs_readable = hello.has_method("logs.tail")
        if self.log_cursor is None:
            await link.unless_stopped(self.read_logs(client, translator))
        loop = asyncio.get_running_loop()
        last_poll = last_rows = loop.time()
        while True:
            item = await self.next_item(queue, translator, last_poll)
            events, closed = self.observe(translator, queue, item)
            due = last_poll + (self.min_poll_s if translator.wants_poll else self.poll_s)
            if not closed and loop.time() >= due:
                slowdown = ROWS_SLOWDOWN if translator.rows_from_events else 1
                read_rows = translator.wants_poll or (
                    loop.time() >= last_rows + self.poll_s * slowdown
                )
                polled, closed = await self.poll(client, translator, queue, read_rows=read_rows)
                events.extend(polled)
                last_poll = loop.time()
                last_rows = last_poll if read_rows else last_rows
            events.extend(translator.settle(link.clock()))
            gap = False
            if events:
                gap = await link.deliver(events)
                link.received(events)
            if (gap or link.resync_due) and not closed and not client.closed:
                await self.resync(client, translator, queue)
            if closed:
                return

    async def drain(self, queue: EventQueue) -> None:
        """Events still queued when the connection ended: the next snapshot covers them."""

    def translator_for(self, hello: Hello) -> ObserverTranslator:
        gateway_boot = hello.boot_id or f"conn-{hello.conn_id or uuid.uuid4()}"
        if self.translator is None or self.gateway_boot != gateway_boot:
            self.translator = ObserverTranslator(
                gateway=self.gateway,
                boot_id=f"observer:{gateway_boot}:{self.instance}",
                version=hello.server_version,
                waiter_timeout_ms=waiter_timeout_ms_for(hello.server_version),
                activity_interval_s=self.activity_s,
                # Long enough for the log line that would name a skip to be read.
                unconfirmed_drop_s=2 * self.poll_s + 1.0,
            )
            self.gateway_boot = gateway_boot
            self.log_cursor = None
        return self.translator

    async def next_item(
        self, queue: EventQueue, translator: ObserverTranslator, last_poll: float
    ) -> QueueItem | None:
        """The next queued event, or None when a poll or a settle is due first."""
        loop = asyncio.get_running_loop()
        interval = self.min_poll_s if translator.wants_poll else self.poll_s
        timeout = last_poll + interval - loop.time()
        settle_at = translator.next_settle_at
        if settle_at is not None:
            timeout = min(timeout, settle_at - self.link.clock())
        try:
            return await asyncio.wait_for(queue.get(), max(0.0, timeout))
        except TimeoutError:
            return None

    def observe(
        self, translator: ObserverTranslator, queue: EventQueue, item: QueueItem | None
    ) -> tuple[list[RegistryEvent], bool]:
        """Translate ``item`` and whatever else is queued; True once an end marker is reached."""
        events: list[RegistryEvent] = []
        while item is not None:
            if ends(item):
                return events, True
            if not isinstance(item, Marker):  # WAKE: only a resync to look at
                received_at, event = item
                if isinstance(event, frames.Event):
                    events.extend(translator.event(event.event, event.payload, received_at))
            item = None if queue.empty() else queue.get_nowait()
        return events, False

    async def poll(
        self,
        client: GatewayClient,
        translator: ObserverTranslator,
        queue: EventQueue,
        *,
        read_rows: bool = True,
    ) -> tuple[list[RegistryEvent], bool]:
        """Read sessions.list (``read_rows``) and new log lines; (events, connection closed)."""
        link = self.link
        if not read_rows:
            return await link.unless_stopped(self.read_logs(client, translator)), False
        try:
            rows, at, complete = await link.unless_stopped(self.session_rows(client))
        except GatewayTimeout as exc:
            log.warning("observer_poll_failed", gateway=self.gateway, error=exc.message)
            return [], False
        # Events that arrived while we waited happened before the answer: apply them first.
        events, closed = self.observe(
            translator, queue, None if queue.empty() else queue.get_nowait()
        )
        events.extend(translator.sessions(rows, at, link.clock(), complete=complete))
        if not closed:
            events.extend(await link.unless_stopped(self.read_logs(client, translator)))
        return events, closed

    async def resync(
        self,
        client: GatewayClient,
        translator: ObserverTranslator,
        queue: EventQueue,
        *,
        load: bool = False,
    ) -> None:
        """Deliver a snapshot built from a fresh sessions.list (``load``: start over)."""
        link = self.link
        link.resync_due = False
        rows, at, complete = await link.unless_stopped(self.session_rows(client))
        if load:
            snapshot = translator.load(rows, at, link.clock())
        else:
            self.observe(translator, queue, None)
            translator.sessions(rows, at, link.clock(), complete=complete)
            snapshot = translator.snapshot(at, link.clock())
        log.info(
            "registry_snapshot_delivering",
            gateway=self.gateway,
            mode="observer",
            boot_id=snapshot.boot_id,
            seq=snapshot.seq,
            entries=len(snapshot.entries),
        )
        if await link.deliver([snapshot]):
            log.warning("snapshot_left_gap", gateway=self.gateway, seq=snapshot.seq)

    # --- polls ------------------------------------------------------------------------

    async def session_rows(self, client: GatewayClient) -> tuple[list[Any], float, bool]:
        """Every ``sessions.list`` row, the gateway's time, and whether the list is whole."""
        rows: list[Any] = []
        at = self.link.clock()
        offset = 0
        for _ in range(MAX_PAGES):
            page = await client.call("sessions.list", {"limit": PAGE_SIZE, "offset": offset})
            if not isinstance(page, dict) or not isinstance(page.get("sessions"), list):
                raise ProtocolViolation("sessions.list answered without a 'sessions' array")
            if isinstance(page.get("ts"), int | float) and offset == 0:
                at = page["ts"] / 1000.0
            rows.extend(page["sessions"])
            following = next_offset(page, offset)
            if following is None:
                return rows, at, True
            offset = following
        log.warning("observer_sessions_truncated", gateway=self.gateway, rows=len(rows))
        return rows, at, False

    async def read_logs(
        self, client: GatewayClient, translator: ObserverTranslator
    ) -> list[RegistryEvent]:
        """New ``logs.tail`` lines since the cursor; the first read only finds the end."""
        if not self.logs_readable:
            return []
        events: list[RegistryEvent] = []
        for _ in range(LOG_PAGES):
            params: dict[str, Any] = {"limit": self.log_limit}
            if self.log_cursor is not None:
                params["cursor"] = self.log_cursor
            try:
                page = await client.call("logs.tail", params)
            except GatewayRejected as exc:
                log.warning("gateway_logs_unreadable", gateway=self.gateway, error=exc.message)
                self.logs_readable = False
                return events
            except GatewayTimeout as exc:
                log.warning("observer_poll_failed", gateway=self.gateway, error=exc.message)
                return events
            cursor = page.get("cursor") if isinstance(page, dict) else None
            lines = page.get("lines") if isinstance(page, dict) else None
            if not isinstance(cursor, int) or not isinstance(lines, list):
                raise ProtocolViolation(f"logs.tail answered {str(page)[:200]!r}")
            first_read = self.log_cursor is None
            self.log_cursor = cursor
            if first_read:
                return events  # lines from before we connected are history, not news
            events.extend(translator.log_lines(lines, self.link.clock()))
            self.report_diagnostics(translator)
            if page.get("truncated") is not True or not lines:
                break
        return events

    def report_diagnostics(self, translator: ObserverTranslator) -> None:
        for d in translator.diagnostics:
            log.warning(
                "gateway_session_stuck_reported",
                gateway=self.gateway,
                session_key=d.session_key,
                kind=d.kind,
                fields=d.fields,
            )
        translator.diagnostics.clear()

    # --- command fallbacks ------------------------------------------------------------

    async def force_clear(
        self, session_key: str, expect_run_id: str, reason: str
    ) -> ForceClearResult:
        """``chat.abort`` the expected run, if the gateway still runs it."""
        client = self.link.connected_client(ABORT_FALLBACK)
        translator = self.translator
        owner = translator.owner_of(session_key) if translator else None
        rows, _, _ = await self.session_rows(client)
        row = next((r for r in rows if isinstance(r, dict) and r.get("key") == session_key), {})
        current = observed_owner(session_key, row, owner)

        def answered(cleared: bool, why: str, entry: SnapshotEntry | None) -> ForceClearResult:
            log.info(
                "force_clear_answered",
                gateway=self.gateway,
                session_key=session_key,
                expect_run_id=expect_run_id,
                cleared=cleared,
                refusal=why,
                reason=reason,
                fallback=ABORT_FALLBACK,
            )
            return ForceClearResult(
                cleared,
                session_key,
                expect_run_id if cleared else "",
                why,
                entry,
                phase=current.phase if cleared and current else "",
                fallback=ABORT_FALLBACK,
                detail=ABORT_FALLBACK_DETAIL,
            )

        if current is None:
            return answered(False, "not_locked", None)
        if current.run_id != expect_run_id:
            return answered(False, "owner_changed", current)
        params: dict[str, Any] = {"sessionKey": session_key}
        if not expect_run_id.startswith("observed:"):
            params["runId"] = expect_run_id  # only this run: its waiters are then admitted
        payload = await client.call(ABORT_FALLBACK, params)
        if not isinstance(payload, dict) or not isinstance(payload.get("aborted"), bool):
            raise ProtocolViolation(f"chat.abort answered {str(payload)[:200]!r}")
        run_ids = payload.get("runIds")
        aborted = payload["aborted"] and (
            "runId" not in params or (isinstance(run_ids, list) and expect_run_id in run_ids)
        )
        if not aborted:
            return answered(False, "abort_refused", current)
        if translator is not None:
            # The release that follows is this force-clear's; see it as soon as it shows.
            translator.note_force_clear(expect_run_id, f"chat.abort: {reason}")
        return answered(True, "", None)

    async def requeue(
        self, session_key: str, messages: Sequence[tuple[str, str]]
    ) -> list[RequeueResult]:
        """``chat.send`` each message; the gateway dedupes on idempotencyKey."""
        client = self.link.connected_client(SEND_FALLBACK)
        results = []
        for text, key in messages:
            params = {"sessionKey": session_key, "message": text, "idempotencyKey": key}
            payload = await client.call(SEND_FALLBACK, params)
            run_id = payload.get("runId") if isinstance(payload, dict) else None
            status = payload.get("status") if isinstance(payload, dict) else None
            if not isinstance(run_id, str) or status not in ("started", "in_flight", "ok", "error"):
                raise ProtocolViolation(f"chat.send answered {str(payload)[:200]!r}")
            # Anything but "started" means the key was seen before: not run a second time.
            started = "started" if status == "started" else "duplicate"
            results.append(RequeueResult(key, run_id, started, SEND_FALLBACK))
        log.info(
            "messages_requeued",
            gateway=self.gateway,
            session_key=session_key,
            started=sum(r.status == "started" for r in results),
            duplicates=sum(r.status == "duplicate" for r in results),
            fallback=SEND_FALLBACK,
        )
        return results


def observed_owner(
    session_key: str, row: dict[str, Any], owner: SnapshotEntry | None
) -> SnapshotEntry | None:
    """The run the gateway reports as holding the session now, as observer mode sees it."""
    active = row.get("activeRunIds")
    if isinstance(active, list):
        ids = [r for r in active if isinstance(r, str)]
        if not ids:
            return None
        if owner is not None and owner.run_id in ids:
            return owner
        return SnapshotEntry(session_key=session_key, run_id=ids[-1])
    has_active = row.get("hasActiveRun")
    if has_active is False or (has_active is None and row.get("status") != "running"):
        return None
    return owner


def next_offset(page: dict[str, Any], offset: int) -> int | None:
    """Where the next sessions.list page starts, or None after the last page."""
    count = len(page["sessions"])
    following = page.get("nextOffset")
    if page.get("hasMore") is True and isinstance(following, int) and following > offset:
        return following
    total = page.get("totalCount")
    if "hasMore" not in page and isinstance(total, int) and count and offset + count < total:
        return offset + count
    return None
