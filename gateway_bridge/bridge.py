"""One gateway's bridge: keep a connection, mirror its registry into a sink, carry commands.

``Bridge.run()`` loops until ``stop()``: connect, pick a mode from the hello,
stream, and on any disconnect reconnect with jittered exponential backoff and
resync from a fresh snapshot.

Plugin mode (the gateway lists ``runboard.registry.subscribe``): subscribe
first, then take a snapshot, so no change falls between the two. The sink
gets the ``Snapshot`` first, then the live changes after it, in batches. When
the sink answers True (the store saw a gap it cannot fill), the bridge takes
a new snapshot and delivers it.

Observer mode (no plugin): the bridge reads ``agent``/``chat``/``sessions.changed``
events as they come, and polls what events do not give (``sessions.list``,
``logs.tail``) every ``observer_poll_s``, sooner (but not more often than
``observer_min_poll_s``) after a run ends; ``gateway_bridge.observer`` turns
all of it into the same normalized events. Commands fall back to what a stock
gateway offers: force-clear aborts the run with ``chat.abort``, requeue
re-sends with ``chat.send`` and the idempotency keys; both say so in their
results.

The sink is the store's side (``adminpanel``'s ingest). No Django here.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

import structlog

from gateway_bridge import frames
from gateway_bridge.client import GatewayClient, Hello
from gateway_bridge.errors import (
    GatewayError,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
    NotSupported,
    ProtocolViolation,
)
from gateway_bridge.events import RegistryEvent, Snapshot, SnapshotEntry
from gateway_bridge.observer import ObserverTranslator, waiter_timeout_ms_for
from gateway_bridge.registry_decode import DecodeError, decode_registry_event, decode_snapshot_entry
from gateway_bridge.registry_decode import decode_snapshot as decode_snapshot_payload

log = structlog.get_logger(__name__)

T = TypeVar("T")

SUBSCRIBE = "runboard.registry.subscribe"
SNAPSHOT = "runboard.registry.snapshot"
FORCE_CLEAR = "runboard.registry.forceClear"
REQUEUE = "runboard.registry.requeue"
REGISTRY_EVENT = "runboard.registry"
MAX_REQUEUE_MESSAGES = 50
# sessions.list pages the observer reads per poll (real OpenClaw pages by 100).
OBSERVER_MAX_PAGES = 50
OBSERVER_PAGE_SIZE = 500
# logs.tail pages read per poll; what is left is read at the next poll.
OBSERVER_LOG_PAGES = 10
# When sessions.changed events carry whole rows, sessions.list is only a safety net.
OBSERVER_ROWS_SLOWDOWN = 5
# Gateway events observer mode reads (plugin mode needs none of them).
OBSERVED_EVENTS = frozenset({"agent", "chat", "sessions.changed", "shutdown"})
_ALWAYS_WANTED = frozenset({REGISTRY_EVENT, "shutdown", "tick", "connect.challenge"})
ABORT_FALLBACK = "chat.abort"
SEND_FALLBACK = "chat.send"
ABORT_FALLBACK_DETAIL = (
    "Observer mode (no companion plugin): the run was aborted with chat.abort instead of "
    "clearing its registry entry. Waiting messages are then admitted; on builds that leak "
    "aborted runs (2026.5.x) the entry can stay held until the gateway restarts."
)


class EventSink(Protocol):
    """The store's side. Returns True when it saw a gap and wants a snapshot."""

    async def __call__(self, events: Sequence[RegistryEvent]) -> bool: ...


@dataclass(frozen=True, slots=True)
class ConnectionState:
    """What the bridge knows about its gateway connection; the store mirrors it."""

    gateway: str
    status: str = "connecting"  # connecting | connected | disconnected | stopped
    mode: str = "unknown"  # plugin | observer | unknown
    boot_id: str = ""
    version: str = ""
    last_event_at: float | None = None
    last_error: str = ""
    reconnects: int = 0
    connected_since: float | None = None


@dataclass(frozen=True, slots=True)
class ForceClearResult:
    """A compare-and-clear's answer.

    Cleared: ``run_id`` is the run that was cleared, ``phase`` its phase and
    ``seq`` the registry change that released it. Refused: ``reason`` is
    ``owner_changed`` (``current`` is the entry that holds the lock now) or
    ``not_locked`` (``current`` is None); ``run_id`` is "".

    In observer mode (no plugin) ``fallback`` is ``"chat.abort"``: the run was
    aborted, not cleared from the registry, and ``detail`` says what that
    means; ``seq`` is None and a refusal may also be ``abort_refused`` (the
    gateway did not abort the run).
    """

    cleared: bool
    session_key: str
    run_id: str
    reason: str
    current: SnapshotEntry | None
    phase: str = ""
    seq: int | None = None
    fallback: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RequeueResult:
    idempotency_key: str
    run_id: str
    status: str  # started | duplicate
    fallback: str = ""  # "chat.send" in observer mode


@dataclass(frozen=True, slots=True)
class AbortResult:
    aborted: bool
    run_ids: tuple[str, ...]


class _Stopped(Exception):
    """``stop()`` was called while the bridge waited on something."""


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


# Queue markers behind the last event: the connection closed / stop() was called.
_CLOSED = _Marker("closed")
_STOP = _Marker("stop")
_QueueItem = tuple[float, Any] | _Marker


class Bridge:
    """Mirror one gateway into ``sink`` until stopped; carry commands back to it."""

    def __init__(
        self,
        *,
        gateway: str,
        url: str,
        token: str,
        sink: EventSink,
        call_timeout_s: float = 5.0,
        connect_timeout_s: float = 10.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        batch_max: int = 2000,
        batch_wait_s: float = 0.0,
        rng: random.Random | None = None,
        on_state: Callable[[ConnectionState], None] | None = None,
        stable_after_s: float = 10.0,
        observer_poll_s: float = 3.0,
        observer_min_poll_s: float = 0.5,
        observer_log_limit: int = 500,
        observer_activity_s: float = 1.0,
        max_buffered_events: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.gateway = gateway
        self.url = url
        self._token = token
        self._sink = sink
        self.call_timeout_s = call_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.batch_max = max(1, batch_max)
        self.batch_wait_s = batch_wait_s
        self._rng = rng or random.Random()
        self._on_state = on_state
        # A connection that stayed up this long resets the backoff.
        self.stable_after_s = stable_after_s
        # Observer mode polls sessions.list and logs.tail every observer_poll_s, and
        # sooner after a run ends, but never more often than observer_min_poll_s.
        self.observer_poll_s = observer_poll_s
        self.observer_min_poll_s = min(observer_min_poll_s, observer_poll_s)
        self.observer_log_limit = observer_log_limit
        self.observer_activity_s = observer_activity_s
        self.max_buffered_events = max_buffered_events
        self._clock = clock
        self._state = ConnectionState(gateway=gateway)
        self._client: GatewayClient | None = None
        self._hello: Hello | None = None
        self._queue: asyncio.Queue[_QueueItem] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._running = False
        self._done = asyncio.Event()
        # (boot id, seq) of the last snapshot delivered: changes at or before it are in it.
        self._synced: tuple[str, int] | None = None
        self._overflowed = False
        # Observer mode: one translator per gateway process (its bootId) for this
        # bridge, so a reconnect continues the numbering instead of looking like a
        # gateway restart to the store; a new bridge gets a boot id of its own.
        self._instance = uuid.uuid4().hex[:12]
        self._observing = False
        self._observer: ObserverTranslator | None = None
        self._observer_gateway_boot = ""
        self._log_cursor: int | None = None
        self._logs_readable = True

    # --- state ----------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state

    def _set_state(self, **changes: Any) -> None:
        new = replace(self._state, **changes)
        if new == self._state:
            return
        self._state = new
        if self._on_state is None:
            return
        try:
            self._on_state(new)
        except Exception:
            log.exception("state_callback_failed", gateway=self.gateway)

    # --- the loop -------------------------------------------------------------

    async def run(self) -> None:
        """Connect, stream, reconnect with backoff; returns after ``stop()``."""
        if self._running:
            raise RuntimeError(f"bridge {self.gateway!r} is already running")
        self._running = True
        failures = 0
        connections = 0
        try:
            while not self._stopping.is_set():
                self._set_state(status="connecting")
                error, up_for = await self._connect_and_serve(reconnect=connections > 0)
                if up_for is not None:
                    connections += 1
                if self._stopping.is_set():
                    break
                # A connection that stayed up a while was healthy: start the backoff over.
                failures = 0 if up_for is not None and up_for >= self.stable_after_s else failures
                delay = self._backoff_delay(failures, error)
                failures += 1
                log.info(
                    "gateway_reconnect_scheduled",
                    gateway=self.gateway,
                    delay_s=round(delay, 3),
                    failures=failures,
                )
                with contextlib.suppress(_Stopped):
                    await self._unless_stopped(asyncio.sleep(delay))
        finally:
            self._running = False
            self._set_state(status="stopped", connected_since=None)
            self._done.set()

    def _backoff_delay(self, failures: int, error: GatewayError | None) -> float:
        if error is not None and not error.retryable:
            # Bad token, protocol mismatch: retrying soon cannot help, retrying later might.
            return self.backoff_max_s
        return full_jitter_delay(failures, self.backoff_initial_s, self.backoff_max_s, self._rng)

    async def _connect_and_serve(
        self, *, reconnect: bool
    ) -> tuple[GatewayError | None, float | None]:
        """One connection's life. Returns (why it ended, how long it was up or None)."""
        queue: asyncio.Queue[_QueueItem] = asyncio.Queue()
        self._queue = queue
        if self._stopping.is_set():
            queue.put_nowait(_STOP)
        client = GatewayClient(
            self.url,
            self._token,
            connect_timeout_s=self.connect_timeout_s,
            call_timeout_s=self.call_timeout_s,
            on_event=self._on_gateway_event,
            wants_event=self._wants_event,
        )
        try:
            hello = await self._unless_stopped(client.connect())
        except _Stopped:
            await client.close()
            return None, None
        except GatewayError as exc:
            await client.close()
            self._record_failure(exc)
            return exc, None
        connected_at = time.monotonic()
        self._connected(client, hello, reconnect=reconnect)
        watcher = asyncio.create_task(self._mark_closed(client, queue))
        error: GatewayError | None = None
        try:
            if hello.has_method(SUBSCRIBE):
                await self._serve_plugin(client, queue)
            else:
                await self._run_observer(client, hello, queue)
            error = client.close_error
        except _Stopped:
            error = None
        except GatewayError as exc:
            error = exc
        finally:
            self._client = None
            watcher.cancel()
            await client.close()
            await self._deliver_leftovers(queue)
        if error is not None:
            self._record_failure(error)
        elif not self._stopping.is_set():
            self._set_state(status="disconnected", connected_since=None)
        return error, time.monotonic() - connected_at

    def _connected(self, client: GatewayClient, hello: Hello, *, reconnect: bool) -> None:
        self._client = client
        self._hello = hello
        self._synced = None
        self._overflowed = False
        mode = "plugin" if hello.has_method(SUBSCRIBE) else "observer"
        self._observing = mode == "observer"
        log.info(
            "bridge_connected",
            gateway=self.gateway,
            mode=mode,
            version=hello.server_version,
            boot_id=hello.boot_id,
        )
        self._set_state(
            status="connected",
            mode=mode,
            boot_id=hello.boot_id or "",
            version=hello.server_version,
            connected_since=self._clock(),
            last_error="",
            reconnects=self._state.reconnects + (1 if reconnect else 0),
        )

    def _record_failure(self, error: GatewayError) -> None:
        log.warning(
            "gateway_connection_failed" if self._state.status == "connecting" else "gateway_lost",
            gateway=self.gateway,
            code=error.code,
            error=error.message,
            retryable=error.retryable,
        )
        self._set_state(status="disconnected", last_error=error.message, connected_since=None)

    async def _mark_closed(self, client: GatewayClient, queue: asyncio.Queue[_QueueItem]) -> None:
        await client.wait_closed()
        queue.put_nowait(_CLOSED)

    async def _unless_stopped(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` unless ``stop()`` comes first (then cancel it, raise _Stopped)."""
        work = asyncio.ensure_future(awaitable)
        stop = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            work.cancel()  # we were cancelled ourselves: leave nothing running behind
            raise
        finally:
            stop.cancel()
        if work.done():
            return work.result()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work
        raise _Stopped

    # --- plugin mode ----------------------------------------------------------

    def _wants_event(self, name: str) -> bool:
        """The events ``_on_gateway_event`` uses (and the client's own); others go unparsed."""
        return name in _ALWAYS_WANTED or (self._observing and name in OBSERVED_EVENTS)

    def _on_gateway_event(self, event: frames.Event) -> None:
        """Called by the client's reader for every well-formed event, in arrival order."""
        if event.event == REGISTRY_EVENT:
            self._buffer(event.payload)
        elif self._observing and event.event in OBSERVED_EVENTS:
            self._buffer(event)
        if event.event == "shutdown":
            log.info("gateway_shutdown_announced", gateway=self.gateway, payload=event.payload)

    def _buffer(self, payload: Any) -> None:
        if self._queue.qsize() >= self.max_buffered_events:
            if not self._overflowed:
                log.warning(
                    "registry_events_dropped",
                    gateway=self.gateway,
                    reason="buffer full; resyncing from a snapshot",
                    buffered=self._queue.qsize(),
                )
            self._overflowed = True
            return
        self._queue.put_nowait((self._clock(), payload))

    async def _serve_plugin(self, client: GatewayClient, queue: asyncio.Queue[_QueueItem]) -> None:
        # Subscribe before the snapshot: every change after the snapshot's seq is then
        # either in the snapshot or on its way to us.
        subscribed = await self._unless_stopped(client.call(SUBSCRIBE, {}))
        if not isinstance(subscribed, dict) or not isinstance(subscribed.get("seq"), int):
            raise ProtocolViolation(f"{SUBSCRIBE} answered {str(subscribed)[:200]!r}")
        await self._resync(client, interruptible=True)
        await self._pump(client, queue)

    async def _pump(self, client: GatewayClient, queue: asyncio.Queue[_QueueItem]) -> None:
        """Deliver buffered changes in batches until the connection closes or stop().

        A batch goes out when it holds ``batch_max`` events or its first event
        has waited ``batch_wait_s``: one sink call (one store transaction) per
        batch instead of per event. The default wait is zero: an idle store gets
        each change at once, and while a delivery is in flight the changes that
        arrive meanwhile queue up and go out together as the next batch, so
        batches grow with the load instead of adding a fixed delay to every event.
        """
        loop = asyncio.get_running_loop()
        batch: list[RegistryEvent] = []
        deadline = 0.0
        while True:
            timeout = max(0.0, deadline - loop.time()) if batch else None
            try:
                item = await asyncio.wait_for(queue.get(), timeout)
            except TimeoutError:
                await self._flush(client, batch)
                batch = []
                continue
            # Take what is already waiting without a wait_for per event.
            while not isinstance(item, _Marker):
                event = self._decode(*item)
                if event is not None:
                    if not batch:
                        deadline = loop.time() + self.batch_wait_s
                    batch.append(event)
                if len(batch) >= self.batch_max:
                    await self._flush(client, batch)
                    batch = []
                if queue.empty():
                    break
                item = queue.get_nowait()
            if isinstance(item, _Marker):
                batch.extend(self._decode_queued(queue))
                await self._flush(client, batch, may_resync=False)
                return

    def _decode(self, received_at: float, payload: Any) -> RegistryEvent | None:
        try:
            event = decode_registry_event(self.gateway, payload, received_at)
        except DecodeError as exc:
            log.warning("frame_rejected", gateway=self.gateway, reason=str(exc))
            return None
        synced = self._synced
        if synced is not None and event.boot_id == synced[0] and event.seq <= synced[1]:
            return None  # already part of the snapshot we delivered
        return event

    def _decode_queued(self, queue: asyncio.Queue[_QueueItem]) -> list[RegistryEvent]:
        """Decode whatever is still queued (behind a marker), without waiting."""
        decoded = []
        while not queue.empty():
            item = queue.get_nowait()
            if isinstance(item, _Marker):
                continue
            if isinstance(item[1], frames.Event):
                continue  # observer mode's leftovers: the next snapshot covers them
            event = self._decode(*item)
            if event is not None:
                decoded.append(event)
        return decoded

    async def _flush(
        self, client: GatewayClient, batch: list[RegistryEvent], *, may_resync: bool = True
    ) -> None:
        if batch:
            gap = await self._deliver(batch)
            self._set_state(last_event_at=max(e.received_at for e in batch))
        else:
            gap = False
        if may_resync and (gap or self._overflowed) and not client.closed:
            await self._resync(client)

    async def _resync(self, client: GatewayClient, *, interruptible: bool = False) -> Snapshot:
        """Take a snapshot and deliver it; later changes continue from its seq.

        ``interruptible``: ``stop()`` may abandon the fetch (never the delivery,
        so the sink is not cancelled halfway through a write).
        """
        self._overflowed = False
        fetching = self._fetch_snapshot(client)
        snapshot = await (self._unless_stopped(fetching) if interruptible else fetching)
        self._synced = (snapshot.boot_id, snapshot.seq)
        self._set_state(boot_id=snapshot.boot_id, version=snapshot.version or self._state.version)
        log.info(
            "registry_snapshot_delivering",
            gateway=self.gateway,
            boot_id=snapshot.boot_id,
            seq=snapshot.seq,
            entries=len(snapshot.entries),
        )
        if await self._deliver([snapshot]):
            # Not looping here: the next batch's answer asks again if it is still needed.
            log.warning("snapshot_left_gap", gateway=self.gateway, seq=snapshot.seq)
        return snapshot

    async def _fetch_snapshot(self, client: GatewayClient) -> Snapshot:
        payload = await client.call(SNAPSHOT, {})
        try:
            return decode_snapshot_payload(self.gateway, payload, self._clock())
        except DecodeError as exc:
            log.warning("frame_rejected", gateway=self.gateway, reason=str(exc))
            raise ProtocolViolation(f"unusable snapshot: {exc}") from None

    async def _deliver(self, events: Sequence[RegistryEvent]) -> bool:
        """Hand events to the sink. A failing sink counts as a gap: a snapshot repairs it."""
        try:
            return bool(await self._sink(events))
        except Exception:
            log.exception("sink_failed", gateway=self.gateway, events=len(events))
            # Give the store a moment before the snapshot that follows.
            await asyncio.sleep(self.backoff_initial_s)
            return True

    async def _deliver_leftovers(self, queue: asyncio.Queue[_QueueItem]) -> None:
        leftovers = self._decode_queued(queue)
        if leftovers:
            await self._deliver(leftovers)
            self._set_state(last_event_at=max(e.received_at for e in leftovers))

    # --- observer mode ---------------------------------------------------------

    async def _run_observer(
        self, client: GatewayClient, hello: Hello, queue: asyncio.Queue[_QueueItem]
    ) -> None:
        """Infer the registry from events and polls until the connection closes or stop().

        Events are translated as they arrive; ``sessions.list`` and
        ``logs.tail`` are read every ``observer_poll_s`` and, after a run ends,
        as soon as ``observer_min_poll_s`` allows. A gateway whose
        ``sessions.changed`` events carry whole rows (2026.9) gets its
        ``sessions.list`` read ``OBSERVER_ROWS_SLOWDOWN`` times less often.
        """
        translator = self._observer_for(hello)
        if hello.has_method("sessions.subscribe"):
            # Real OpenClaw sends sessions.changed only to subscribers.
            with contextlib.suppress(GatewayRejected, GatewayTimeout):
                await self._unless_stopped(client.call("sessions.subscribe", {}))
        await self._observer_resync(client, translator, queue, load=True)
        self._logs_readable = hello.has_method("logs.tail")
        if self._log_cursor is None:
            await self._unless_stopped(self._read_logs(client, translator))
        loop = asyncio.get_running_loop()
        last_poll = last_rows = loop.time()
        while True:
            item = await self._next_item(queue, translator, last_poll)
            events, closed = self._observe(translator, queue, item)
            due = last_poll + (
                self.observer_min_poll_s if translator.wants_poll else self.observer_poll_s
            )
            if not closed and loop.time() >= due:
                slowdown = OBSERVER_ROWS_SLOWDOWN if translator.rows_from_events else 1
                read_rows = translator.wants_poll or (
                    loop.time() >= last_rows + self.observer_poll_s * slowdown
                )
                polled, closed = await self._observer_poll(
                    client, translator, queue, read_rows=read_rows
                )
                events.extend(polled)
                last_poll = loop.time()
                last_rows = last_poll if read_rows else last_rows
            events.extend(translator.settle(self._clock()))
            if events:
                gap = await self._deliver(events)
                self._set_state(last_event_at=max(e.received_at for e in events))
                if (gap or self._overflowed) and not closed and not client.closed:
                    await self._observer_resync(client, translator, queue)
            if closed:
                return

    def _observer_for(self, hello: Hello) -> ObserverTranslator:
        gateway_boot = hello.boot_id or f"conn-{hello.conn_id or uuid.uuid4()}"
        if self._observer is None or self._observer_gateway_boot != gateway_boot:
            self._observer = ObserverTranslator(
                gateway=self.gateway,
                boot_id=f"observer:{gateway_boot}:{self._instance}",
                version=hello.server_version,
                waiter_timeout_ms=waiter_timeout_ms_for(hello.server_version),
                activity_interval_s=self.observer_activity_s,
                # Long enough for the log line that would name a skip to be read.
                unconfirmed_drop_s=2 * self.observer_poll_s + 1.0,
            )
            self._observer_gateway_boot = gateway_boot
            self._log_cursor = None
        return self._observer

    async def _next_item(
        self, queue: asyncio.Queue[_QueueItem], translator: ObserverTranslator, last_poll: float
    ) -> _QueueItem | None:
        """The next queued event, or None when a poll or a settle is due first."""
        loop = asyncio.get_running_loop()
        interval = self.observer_min_poll_s if translator.wants_poll else self.observer_poll_s
        timeout = last_poll + interval - loop.time()
        settle_at = translator.next_settle_at
        if settle_at is not None:
            timeout = min(timeout, settle_at - self._clock())
        try:
            return await asyncio.wait_for(queue.get(), max(0.0, timeout))
        except TimeoutError:
            return None

    def _observe(
        self,
        translator: ObserverTranslator,
        queue: asyncio.Queue[_QueueItem],
        item: _QueueItem | None,
    ) -> tuple[list[RegistryEvent], bool]:
        """Translate ``item`` and whatever else is queued; True once a marker is reached."""
        events: list[RegistryEvent] = []
        while item is not None:
            if isinstance(item, _Marker):
                return events, True
            received_at, event = item
            if isinstance(event, frames.Event):
                events.extend(translator.event(event.event, event.payload, received_at))
            item = None if queue.empty() else queue.get_nowait()
        return events, False

    async def _observer_poll(
        self,
        client: GatewayClient,
        translator: ObserverTranslator,
        queue: asyncio.Queue[_QueueItem],
        *,
        read_rows: bool = True,
    ) -> tuple[list[RegistryEvent], bool]:
        """Read sessions.list (``read_rows``) and new log lines; (events, connection closed)."""
        if not read_rows:
            return await self._unless_stopped(self._read_logs(client, translator)), False
        try:
            rows, at, complete = await self._unless_stopped(self._session_rows(client))
        except GatewayTimeout as exc:
            log.warning("observer_poll_failed", gateway=self.gateway, error=exc.message)
            return [], False
        # Events that arrived while we waited happened before the answer: apply them first.
        events, closed = self._observe(
            translator, queue, None if queue.empty() else queue.get_nowait()
        )
        events.extend(translator.sessions(rows, at, self._clock(), complete=complete))
        if not closed:
            events.extend(await self._unless_stopped(self._read_logs(client, translator)))
        return events, closed

    async def _observer_resync(
        self,
        client: GatewayClient,
        translator: ObserverTranslator,
        queue: asyncio.Queue[_QueueItem],
        *,
        load: bool = False,
    ) -> None:
        """Deliver a snapshot built from a fresh sessions.list (``load``: start over)."""
        self._overflowed = False
        rows, at, complete = await self._unless_stopped(self._session_rows(client))
        if load:
            snapshot = translator.load(rows, at, self._clock())
        else:
            self._observe(translator, queue, None)
            translator.sessions(rows, at, self._clock(), complete=complete)
            snapshot = translator.snapshot(at, self._clock())
        self._synced = (snapshot.boot_id, snapshot.seq)
        log.info(
            "registry_snapshot_delivering",
            gateway=self.gateway,
            mode="observer",
            boot_id=snapshot.boot_id,
            seq=snapshot.seq,
            entries=len(snapshot.entries),
        )
        if await self._deliver([snapshot]):
            log.warning("snapshot_left_gap", gateway=self.gateway, seq=snapshot.seq)

    async def _session_rows(self, client: GatewayClient) -> tuple[list[Any], float, bool]:
        """Every ``sessions.list`` row, the gateway's time, and whether the list is whole."""
        rows: list[Any] = []
        at = self._clock()
        offset = 0
        for _ in range(OBSERVER_MAX_PAGES):
            page = await client.call(
                "sessions.list", {"limit": OBSERVER_PAGE_SIZE, "offset": offset}
            )
            if not isinstance(page, dict) or not isinstance(page.get("sessions"), list):
                raise ProtocolViolation("sessions.list answered without a 'sessions' array")
            if isinstance(page.get("ts"), int | float) and offset == 0:
                at = page["ts"] / 1000.0
            rows.extend(page["sessions"])
            next_offset = _next_offset(page, offset)
            if next_offset is None:
                return rows, at, True
            offset = next_offset
        log.warning("observer_sessions_truncated", gateway=self.gateway, rows=len(rows))
        return rows, at, False

    async def _read_logs(
        self, client: GatewayClient, translator: ObserverTranslator
    ) -> list[RegistryEvent]:
        """New ``logs.tail`` lines since the cursor; the first read only finds the end."""
        if not self._logs_readable:
            return []
        events: list[RegistryEvent] = []
        for _ in range(OBSERVER_LOG_PAGES):
            params: dict[str, Any] = {"limit": self.observer_log_limit}
            if self._log_cursor is not None:
                params["cursor"] = self._log_cursor
            try:
                page = await client.call("logs.tail", params)
            except GatewayRejected as exc:
                log.warning("gateway_logs_unreadable", gateway=self.gateway, error=exc.message)
                self._logs_readable = False
                return events
            except GatewayTimeout as exc:
                log.warning("observer_poll_failed", gateway=self.gateway, error=exc.message)
                return events
            cursor = page.get("cursor") if isinstance(page, dict) else None
            lines = page.get("lines") if isinstance(page, dict) else None
            if not isinstance(cursor, int) or not isinstance(lines, list):
                raise ProtocolViolation(f"logs.tail answered {str(page)[:200]!r}")
            first_read = self._log_cursor is None
            self._log_cursor = cursor
            if first_read:
                return events  # lines from before we connected are history, not news
            events.extend(translator.log_lines(lines, self._clock()))
            self._report_diagnostics(translator)
            if page.get("truncated") is not True or not lines:
                break
        return events

    def _report_diagnostics(self, translator: ObserverTranslator) -> None:
        for d in translator.diagnostics:
            log.warning(
                "gateway_session_stuck_reported",
                gateway=self.gateway,
                session_key=d.session_key,
                kind=d.kind,
                fields=d.fields,
            )
        translator.diagnostics.clear()

    # --- stopping ---------------------------------------------------------------

    async def stop(self) -> None:
        """Stop the loop, flush what is buffered to the sink, close the socket."""
        self._stopping.set()
        self._queue.put_nowait(_STOP)
        if self._running:
            try:
                # Generous: a flush to the sink may still be running.
                async with asyncio.timeout(self.call_timeout_s + self.connect_timeout_s):
                    await self._done.wait()
            except TimeoutError:
                log.warning("bridge_stop_timed_out", gateway=self.gateway)
        self._set_state(status="stopped", connected_since=None)
        log.info("bridge_stopped", gateway=self.gateway)

    # --- commands ---------------------------------------------------------------

    def _connected_client(self, method: str) -> GatewayClient:
        client = self._client
        if client is None or client.closed or self._state.status != "connected":
            raise GatewayUnavailable(f"bridge {self.gateway!r} is not connected; nothing was sent")
        if self._hello is not None and not self._hello.has_method(method):
            raise NotSupported(
                f"gateway {self.gateway!r} has no {method} "
                f"({self._state.mode} mode: the companion plugin is missing)"
            )
        return client

    async def snapshot(self) -> Snapshot:
        """The registry as the gateway holds it now (not delivered to the sink)."""
        return await self._fetch_snapshot(self._connected_client(SNAPSHOT))

    async def force_clear(
        self, session_key: str, expect_run_id: str, reason: str
    ) -> ForceClearResult:
        """Compare-and-clear: clears only if ``expect_run_id`` still owns the lock."""
        if not session_key or not expect_run_id or not reason.strip():
            raise ValueError("force_clear needs a session key, the expected run id and a reason")
        if self._observer_commands(FORCE_CLEAR):
            return await self._force_clear_by_abort(session_key, expect_run_id, reason)
        client = self._connected_client(FORCE_CLEAR)
        params = {"sessionKey": session_key, "expectRunId": expect_run_id, "reason": reason}
        payload = await client.call(FORCE_CLEAR, params)
        result = _force_clear_result(session_key, payload)
        log.info(
            "force_clear_answered",
            gateway=self.gateway,
            session_key=session_key,
            expect_run_id=expect_run_id,
            cleared=result.cleared,
            refusal=result.reason,
        )
        return result

    async def requeue(
        self, session_key: str, messages: Sequence[tuple[str, str]]
    ) -> list[RequeueResult]:
        """Dispatch lost messages again: ``messages`` are (text, idempotency key) pairs."""
        if not session_key or not 1 <= len(messages) <= MAX_REQUEUE_MESSAGES:
            raise ValueError(f"requeue takes a session key and 1-{MAX_REQUEUE_MESSAGES} messages")
        if self._observer_commands(REQUEUE):
            return await self._requeue_by_send(session_key, messages)
        client = self._connected_client(REQUEUE)
        params = {
            "sessionKey": session_key,
            "messages": [{"text": text, "idempotencyKey": key} for text, key in messages],
        }
        payload = await client.call(REQUEUE, params)
        return _requeue_results(payload)

    def _observer_commands(self, method: str) -> bool:
        """Connected without the plugin's ``method``: use the observer-mode fallback."""
        hello = self._hello
        return self._observing and hello is not None and not hello.has_method(method)

    async def _force_clear_by_abort(
        self, session_key: str, expect_run_id: str, reason: str
    ) -> ForceClearResult:
        """Observer mode: ``chat.abort`` the expected run, if the gateway still runs it."""
        client = self._connected_client(ABORT_FALLBACK)
        translator = self._observer
        owner = translator.owner_of(session_key) if translator else None
        rows, _, _ = await self._session_rows(client)
        row = next((r for r in rows if isinstance(r, dict) and r.get("key") == session_key), {})
        current = _observed_owner(session_key, row, owner)

        def refused(why: str, entry: SnapshotEntry | None) -> ForceClearResult:
            log.info(
                "force_clear_answered",
                gateway=self.gateway,
                session_key=session_key,
                expect_run_id=expect_run_id,
                cleared=False,
                refusal=why,
                fallback=ABORT_FALLBACK,
            )
            return ForceClearResult(
                False,
                session_key,
                "",
                why,
                entry,
                fallback=ABORT_FALLBACK,
                detail=ABORT_FALLBACK_DETAIL,
            )

        if current is None:
            return refused("not_locked", None)
        if current.run_id != expect_run_id:
            return refused("owner_changed", current)
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
            return refused("abort_refused", current)
        if translator is not None:
            # The release that follows is this force-clear's; see it as soon as it shows.
            translator.note_force_clear(expect_run_id, f"chat.abort: {reason}")
        log.info(
            "force_clear_answered",
            gateway=self.gateway,
            session_key=session_key,
            expect_run_id=expect_run_id,
            cleared=True,
            reason=reason,
            fallback=ABORT_FALLBACK,
        )
        return ForceClearResult(
            True,
            session_key,
            expect_run_id,
            "",
            None,
            phase=current.phase,
            fallback=ABORT_FALLBACK,
            detail=ABORT_FALLBACK_DETAIL,
        )

    async def _requeue_by_send(
        self, session_key: str, messages: Sequence[tuple[str, str]]
    ) -> list[RequeueResult]:
        """Observer mode: ``chat.send`` each message; the gateway dedupes on idempotencyKey."""
        client = self._connected_client(SEND_FALLBACK)
        results = []
        for text, key in messages:
            params = {"sessionKey": session_key, "message": text, "idempotencyKey": key}
            payload = await client.call(SEND_FALLBACK, params)
            run_id = payload.get("runId") if isinstance(payload, dict) else None
            status = payload.get("status") if isinstance(payload, dict) else None
            if not isinstance(run_id, str) or status not in ("started", "in_flight", "ok", "error"):
                raise ProtocolViolation(f"chat.send answered {str(payload)[:200]!r}")
            # Anything but "started" means the key was seen before: not run a second time.
            results.append(
                RequeueResult(
                    key, run_id, "started" if status == "started" else "duplicate", SEND_FALLBACK
                )
            )
        log.info(
            "messages_requeued",
            gateway=self.gateway,
            session_key=session_key,
            started=sum(r.status == "started" for r in results),
            duplicates=sum(r.status == "duplicate" for r in results),
            fallback=SEND_FALLBACK,
        )
        return results

    async def abort(self, session_key: str, run_id: str | None = None) -> AbortResult:
        """``chat.abort``: abort the session's runs (or one run)."""
        client = self._connected_client("chat.abort")
        params: dict[str, Any] = {"sessionKey": session_key}
        if run_id:
            params["runId"] = run_id
        payload = await client.call("chat.abort", params)
        if not isinstance(payload, dict) or not isinstance(payload.get("aborted"), bool):
            raise ProtocolViolation(f"chat.abort answered {str(payload)[:200]!r}")
        run_ids = payload.get("runIds")
        return AbortResult(
            aborted=payload["aborted"],
            run_ids=tuple(r for r in run_ids if isinstance(r, str))
            if isinstance(run_ids, list)
            else (),
        )


def full_jitter_delay(failures: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(max_s, initial_s * 2**failures)].

    Spreads the reconnects of many bridges after a gateway restart instead of
    having them all knock at the same instant.
    """
    ceiling = min(max_s, initial_s * 2 ** min(max(failures, 0), 30))
    return rng.uniform(0.0, ceiling)


def _observed_owner(
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


def _next_offset(page: dict[str, Any], offset: int) -> int | None:
    """Where the next sessions.list page starts, or None after the last page."""
    count = len(page["sessions"])
    next_offset = page.get("nextOffset")
    if page.get("hasMore") is True and isinstance(next_offset, int) and next_offset > offset:
        return next_offset
    total = page.get("totalCount")
    if "hasMore" not in page and isinstance(total, int) and count and offset + count < total:
        return offset + count
    return None


def _force_clear_result(session_key: str, payload: object) -> ForceClearResult:
    if not isinstance(payload, dict) or not isinstance(payload.get("cleared"), bool):
        raise ProtocolViolation(f"{FORCE_CLEAR} answered {str(payload)[:200]!r}")
    current = None
    if payload.get("current") is not None:
        try:
            current = decode_snapshot_entry(payload["current"], f"{FORCE_CLEAR} current")
        except DecodeError as exc:
            raise ProtocolViolation(str(exc)) from None
    run_id = payload.get("runId")
    phase = payload.get("phase")
    seq = payload.get("seq")
    reason = payload.get("reason")
    return ForceClearResult(
        cleared=payload["cleared"],
        session_key=session_key,
        run_id=run_id if isinstance(run_id, str) else "",
        reason=reason if isinstance(reason, str) else "",
        current=current,
        phase=phase if isinstance(phase, str) else "",
        seq=seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
    )


def _requeue_results(payload: object) -> list[RequeueResult]:
    rows = payload.get("results") if isinstance(payload, dict) else None
    if not isinstance(rows, list):
        raise ProtocolViolation(f"{REQUEUE} answered {str(payload)[:200]!r}")
    results = []
    for row in rows:
        if not isinstance(row, dict) or not all(
            isinstance(row.get(k), str) for k in ("idempotencyKey", "runId", "status")
        ):
            raise ProtocolViolation(f"{REQUEUE} result row {str(row)[:200]!r} is malformed")
        results.append(RequeueResult(row["idempotencyKey"], row["runId"], row["status"]))
    return results
