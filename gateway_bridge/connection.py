"""One gateway's bridge: keep a connection, mirror its registry into a sink, carry commands.

``Bridge.run()`` loops until ``stop()``: connect, pick a mode from the hello
(``plugin`` when the gateway lists the companion plugin's subscribe, else
``observer``), stream, and on any disconnect reconnect with jittered
exponential backoff and resync from a fresh snapshot. The modes are in
``plugin`` and ``observer.mode``; the commands' steps in ``commands``.

The sink is the store's side (``adminpanel``'s ingest). No Django here.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import structlog

from gateway_bridge import commands, frames
from gateway_bridge.client import DEFAULT_SCOPES, GatewayClient, Hello
from gateway_bridge.errors import (
    GatewayError,
    GatewayUnavailable,
    NotSupported,
    ProtocolViolation,
)
from gateway_bridge.events import RegistryEvent, Snapshot
from gateway_bridge.feed import (
    CLOSED,
    STOP,
    WAKE,
    EventQueue,
    EventSink,
    Mode,
    ResumePoint,
    Stopped,
    StoreUnavailable,
)
from gateway_bridge.observer.mode import OBSERVED_EVENTS, ObserverMode
from gateway_bridge.plugin import REGISTRY_EVENT, SNAPSHOT, SUBSCRIBE, PluginMode
from gateway_bridge.results import AbortResult, ActionResult, ForceClearResult, RequeueResult

log = structlog.get_logger(__name__)

T = TypeVar("T")

ALWAYS_WANTED = frozenset({REGISTRY_EVENT, "shutdown", "tick", "connect.challenge"})


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
    scopes: tuple[str, ...] | None = None  # granted in hello-ok; None: not reported


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
        resume_from: Callable[[], Awaitable[ResumePoint]] | None = None,
        scopes: tuple[str, ...] = DEFAULT_SCOPES,
    ) -> None:
        self.gateway = gateway
        self.scopes = scopes
        self.url = url
        self._token = token
        self._sink = sink
        self.call_timeout_s = call_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._rng = rng or random.Random()
        self._on_state = on_state
        # A connection that stayed up this long resets the backoff.
        self.stable_after_s = stable_after_s
        self.max_buffered_events = max_buffered_events
        self.clock = clock
        # The store's cursor: a (re)connection resumes from it when the gateway can replay.
        self._resume_from = resume_from
        self._state = ConnectionState(gateway=gateway)
        self._client: GatewayClient | None = None
        self._hello: Hello | None = None
        self._queue: EventQueue = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._running = False
        self._done = asyncio.Event()
        # Events were dropped (buffer full) or a resync was asked for: the mode resyncs.
        self.resync_due = False
        self.plugin = PluginMode(self, batch_max=batch_max, batch_wait_s=batch_wait_s)
        # Observer mode polls sessions.list and logs.tail every observer_poll_s, and
        # sooner after a run ends, but never more often than observer_min_poll_s.
        self.observer = ObserverMode(
            self,
            poll_s=observer_poll_s,
            min_poll_s=observer_min_poll_s,
            log_limit=observer_log_limit,
            activity_s=observer_activity_s,
        )
        self._mode: Mode | None = None

    # --- state ----------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state

    def set_state(self, **changes: Any) -> None:
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
                self.set_state(status="connecting")
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
                with contextlib.suppress(Stopped):
                    await self.unless_stopped(asyncio.sleep(delay))
        finally:
            self._running = False
            self.set_state(status="stopped", connected_since=None)
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
        queue: EventQueue = asyncio.Queue()
        self._queue = queue
        if self._stopping.is_set():
            queue.put_nowait(STOP)
        client = GatewayClient(
            self.url,
            self._token,
            scopes=self.scopes,
            connect_timeout_s=self.connect_timeout_s,
            call_timeout_s=self.call_timeout_s,
            on_event=self._on_gateway_event,
            wants_event=self._wants_event,
        )
        try:
            hello = await self.unless_stopped(client.connect())
        except Stopped:
            await client.close()
            return None, None
        except GatewayError as exc:
            await client.close()
            self._record_failure(exc)
            return exc, None
        connected_at = time.monotonic()
        mode = self._connected(client, hello, reconnect=reconnect)
        watcher = asyncio.create_task(self._mark_closed(client, queue))
        error: GatewayError | None = None
        try:
            await mode.serve(client, hello, queue)
            error = client.close_error
        except Stopped:
            error = None
        except GatewayError as exc:
            error = exc
        finally:
            self._client = None
            watcher.cancel()
            await client.close()
            await mode.drain(queue)
        if error is not None:
            self._record_failure(error)
        elif not self._stopping.is_set():
            self.set_state(status="disconnected", connected_since=None)
        return error, time.monotonic() - connected_at

    def _connected(self, client: GatewayClient, hello: Hello, *, reconnect: bool) -> Mode:
        self._client = client
        self._hello = hello
        self.resync_due = False
        mode: Mode = self.plugin if hello.has_method(SUBSCRIBE) else self.observer
        self._mode = mode
        log.info(
            "bridge_connected",
            gateway=self.gateway,
            mode=mode.name,
            version=hello.server_version,
            boot_id=hello.boot_id,
        )
        self.set_state(
            status="connected",
            mode=mode.name,
            boot_id=hello.boot_id or "",
            version=hello.server_version,
            connected_since=self.clock(),
            last_error="",
            reconnects=self._state.reconnects + (1 if reconnect else 0),
            scopes=tuple(sorted(hello.scopes)) if hello.scopes is not None else None,
        )
        return mode

    def _record_failure(self, error: GatewayError) -> None:
        log.warning(
            "gateway_connection_failed" if self._state.status == "connecting" else "gateway_lost",
            gateway=self.gateway,
            code=error.code,
            error=error.message,
            retryable=error.retryable,
        )
        self.set_state(status="disconnected", last_error=error.message, connected_since=None)

    async def _mark_closed(self, client: GatewayClient, queue: EventQueue) -> None:
        await client.wait_closed()
        queue.put_nowait(CLOSED)

    async def unless_stopped(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` unless ``stop()`` comes first (then cancel it, raise Stopped)."""
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
        raise Stopped

    # --- events in, events out -------------------------------------------------

    def _observing(self) -> bool:
        return self._mode is self.observer

    def _wants_event(self, name: str) -> bool:
        """The events ``_on_gateway_event`` uses (and the client's own); others go unparsed."""
        return name in ALWAYS_WANTED or (self._observing() and name in OBSERVED_EVENTS)

    def _on_gateway_event(self, event: frames.Event) -> None:
        """Called by the client's reader for every well-formed event, in arrival order."""
        if event.event == REGISTRY_EVENT:
            self._buffer(event.payload)
        elif self._observing() and event.event in OBSERVED_EVENTS:
            self._buffer(event)
        if event.event == "shutdown":
            log.info("gateway_shutdown_announced", gateway=self.gateway, payload=event.payload)

    def _buffer(self, payload: Any) -> None:
        if self._queue.qsize() >= self.max_buffered_events:
            if not self.resync_due:
                log.warning(
                    "registry_events_dropped",
                    gateway=self.gateway,
                    reason="buffer full; resyncing from a snapshot",
                    buffered=self._queue.qsize(),
                )
            self.resync_due = True
            return
        self._queue.put_nowait((self.clock(), payload))

    async def deliver(self, events: Sequence[RegistryEvent]) -> bool:
        """Hand events to the sink, holding them while the store is unavailable.

        A store that is down or busy (``StoreUnavailable``) gets the same batch
        again with backoff, for as long as it takes (events that arrive
        meanwhile wait in the queue); any other failure counts as a gap, which
        a resync repairs.
        """
        failures = 0
        while True:
            try:
                gap = bool(await self._sink(events))
            except StoreUnavailable as exc:
                failures += 1
                delay = min(self.backoff_max_s, self.backoff_initial_s * 2 ** min(failures, 10))
                if failures == 1:
                    log.warning("store_unavailable", gateway=self.gateway, error=str(exc),
                                held_events=len(events))  # fmt: skip
                    self.set_state(last_error=f"store unavailable: {exc}")
                if self._stopping.is_set() and failures > 3:
                    log.error("store_unavailable_at_stop", gateway=self.gateway,
                              lost_events=len(events))  # fmt: skip
                    return True
                await asyncio.sleep(delay)
                continue
            except Exception:
                log.exception("sink_failed", gateway=self.gateway, events=len(events))
                # Give the store a moment before the snapshot that follows.
                await asyncio.sleep(self.backoff_initial_s)
                return True
            if failures:
                log.warning("store_back", gateway=self.gateway, retries=failures)
                self.set_state(last_error="")
            return gap

    async def resume_point(self) -> ResumePoint:
        if self._resume_from is None:
            return None
        try:
            return await self._resume_from()
        except Exception:
            log.exception("resume_point_unreadable", gateway=self.gateway)
            return None

    def received(self, events: Sequence[RegistryEvent]) -> None:
        self.set_state(last_event_at=max(e.received_at for e in events))

    def request_resync(self) -> None:
        """Bring the store back in line from a fresh snapshot, as soon as the mode can.

        The store asks when a gap outlived its reorder wait with no new event
        to answer; the same resync the mode runs when the sink reports a gap.
        """
        self.resync_due = True
        self._queue.put_nowait(WAKE)

    # --- stopping ---------------------------------------------------------------

    async def stop(self) -> None:
        """Stop the loop, flush what is buffered to the sink, close the socket."""
        self._stopping.set()
        self._queue.put_nowait(STOP)
        if self._running:
            try:
                # Generous: a flush to the sink may still be running.
                async with asyncio.timeout(self.call_timeout_s + self.connect_timeout_s):
                    await self._done.wait()
            except TimeoutError:
                log.warning("bridge_stop_timed_out", gateway=self.gateway)
        self.set_state(status="stopped", connected_since=None)
        log.info("bridge_stopped", gateway=self.gateway)

    # --- commands ---------------------------------------------------------------

    def connected_client(self, method: str) -> GatewayClient:
        client = self._client
        if client is None or client.closed or self._state.status != "connected":
            raise GatewayUnavailable(f"bridge {self.gateway!r} is not connected; nothing was sent")
        if self._hello is not None and not self._hello.has_method(method):
            raise NotSupported(
                f"gateway {self.gateway!r} has no {method} "
                f"({self._state.mode} mode: the companion plugin is missing)"
            )
        return client

    def command_mode(self) -> Mode:
        """The mode commands go through now: the connection's (plugin without a connection,
        whose calls then say it is not connected)."""
        return self._mode if self._mode is not None and self._client is not None else self.plugin

    async def snapshot(self) -> Snapshot:
        """The registry as the gateway holds it now (not delivered to the sink)."""
        return await self.plugin.fetch_snapshot(self.connected_client(SNAPSHOT))

    async def act(
        self,
        action: str,
        *,
        session_key: str,
        run_id: str = "",
        reason: str = "",
        messages: Sequence[tuple[str, str]] = (),
        timeout_s: float | None = None,
    ) -> ActionResult:
        """One operator action, every call it makes in the mode chosen once, and their answers."""
        return await commands.carry_out(
            action,
            self.command_mode(),
            self.abort,
            session_key=session_key,
            run_id=run_id,
            reason=reason,
            messages=messages,
            timeout_s=self.call_timeout_s if timeout_s is None else timeout_s,
        )

    async def force_clear(
        self, session_key: str, expect_run_id: str, reason: str
    ) -> ForceClearResult:
        """Compare-and-clear: clears only if ``expect_run_id`` still owns the lock."""
        if not session_key or not expect_run_id or not reason.strip():
            raise ValueError("force_clear needs a session key, the expected run id and a reason")
        return await self.command_mode().force_clear(session_key, expect_run_id, reason)

    async def requeue(
        self, session_key: str, messages: Sequence[tuple[str, str]]
    ) -> list[RequeueResult]:
        """Dispatch lost messages again: ``messages`` are (text, idempotency key) pairs."""
        most = commands.MAX_REQUEUE_MESSAGES
        if not session_key or not 1 <= len(messages) <= most:
            raise ValueError(f"requeue takes a session key and 1-{most} messages")
        return await self.command_mode().requeue(session_key, messages)

    async def abort(self, session_key: str, run_id: str | None = None) -> AbortResult:
        """``chat.abort``: abort the session's runs (or one run); the same in both modes."""
        client = self.connected_client(commands.ABORT)
        params: dict[str, Any] = {"sessionKey": session_key}
        if run_id:
            params["runId"] = run_id
        payload = await client.call(commands.ABORT, params)
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
