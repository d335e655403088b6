"""An asyncio client for the OpenClaw gateway WebSocket protocol (docs/protocol.md §1).

``GatewayClient`` does the handshake, correlates requests with responses by
id, hands events to a callback, and watches the connection: websockets pings
plus the gateway's own ``tick`` events (no frame for two tick intervals means
the peer is gone even if TCP has not noticed). A hostile or broken peer can
make it log ``frame_rejected``, never crash the reader.

It does not reconnect: one ``GatewayClient`` is one connection. The bridge
(``gateway_bridge.connection``) owns reconnecting and resyncing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from gateway_bridge import frames
from gateway_bridge.errors import (
    GatewayError,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
    HandshakeFailed,
    ProtocolViolation,
)
from gateway_bridge.scopes import DEFAULT_SCOPES  # unless a gateway's access asks less

log = structlog.get_logger(__name__)

MIN_PROTOCOL = 3
MAX_PROTOCOL = 4
CLIENT_ID = "gateway-client"
# OpenClaw's default when hello-ok carries no policy.tickIntervalMs.
DEFAULT_TICK_INTERVAL_S = 30.0
# Missing this many tick intervals in a row means the connection is dead.
TICKS_BEFORE_DEAD = 2.0
CLOSE_GATEWAY_STARTING = 1013
# Responses that arrive after their call timed out are expected, not hostile;
# remember that many recent ids so they are logged as late, not as unknown.
LATE_IDS_REMEMBERED = 256

# Payload shapes of the events the bridge relies on; other events pass through.
_EVENT_PAYLOAD_KEYS: dict[str, tuple[tuple[str, type | tuple[type, ...]], ...]] = {
    "tick": (("ts", (int, float)),),
    "shutdown": (("reason", str),),
    "runboard.registry": (("kind", str), ("bootId", str), ("seq", int)),
}
# The head of an event frame as OpenClaw (``JSON.stringify``) and Python's json write it;
# a frame written any other way is parsed in full.
_EVENT_HEAD = re.compile(r'\{"type":\s?"event",\s?"event":\s?"([A-Za-z0-9_.:-]{1,64})"')
_OBJECT_PAYLOAD_EVENTS = frozenset({"agent", "chat", "sessions.changed", "health"})


@dataclass(frozen=True, slots=True)
class Hello:
    """What the gateway said about itself in ``hello-ok``."""

    protocol: int
    server_version: str
    boot_id: str | None
    conn_id: str
    methods: frozenset[str]
    events: frozenset[str]
    tick_interval_s: float
    max_payload: int | None = None
    # What hello-ok's auth.scopes granted; None when the gateway did not say.
    scopes: frozenset[str] | None = None

    def has_method(self, method: str) -> bool:
        return method in self.methods


EventCallback = Callable[[frames.Event], None]


class GatewayClient:
    """One connection to one gateway: handshake, calls, events, liveness."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        connect_timeout_s: float = 10.0,
        call_timeout_s: float = 5.0,
        on_event: EventCallback | None = None,
        wants_event: Callable[[str], bool] | None = None,
        client_version: str = "runboard/0.1",
        max_frame_bytes: int = frames.MAX_FRAME_BYTES,
        ping_interval_s: float | None = 20.0,
        ping_timeout_s: float | None = 20.0,
        close_timeout_s: float = 2.0,
    ) -> None:
        self.url = url
        self._token = token
        self.scopes = tuple(scopes)
        self.connect_timeout_s = connect_timeout_s
        self.call_timeout_s = call_timeout_s
        self.on_event = on_event
        self.wants_event = wants_event
        self.events_ignored = 0
        self.client_version = client_version
        self.max_frame_bytes = max_frame_bytes
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self._close_timeout_s = close_timeout_s
        self._ws: ClientConnection | None = None
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._late_ids: deque[str] = deque(maxlen=LATE_IDS_REMEMBERED)
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = asyncio.Event()
        self._close_error: GatewayError | None = None
        self._last_frame_at = time.monotonic()
        self.hello: Hello | None = None

    # --- connecting -----------------------------------------------------------

    async def connect(self) -> Hello:
        """Open the socket and do the handshake within ``connect_timeout_s``."""
        if self._ws is not None:
            raise RuntimeError("GatewayClient.connect() called twice; make a new client")
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                self._ws = await self._open_socket()
                hello = await self._handshake(self._ws)
        except TimeoutError:
            await self._abandon()
            raise GatewayTimeout(
                f"no hello from {self.url} within {self.connect_timeout_s:g} s"
            ) from None
        except ConnectionClosed as exc:
            await self._abandon()
            raise _closed_during_handshake(exc) from None
        except (GatewayError, asyncio.CancelledError):
            await self._abandon()
            raise
        self.hello = hello
        self._last_frame_at = time.monotonic()
        self._tasks = [
            asyncio.create_task(self._read_frames(self._ws), name=f"gateway-reader {self.url}"),
            asyncio.create_task(self._watch_ticks(self._ws), name=f"gateway-ticks {self.url}"),
        ]
        log.info(
            "gateway_connected",
            url=self.url,
            protocol=hello.protocol,
            version=hello.server_version,
            boot_id=hello.boot_id,
        )
        return hello

    async def _open_socket(self) -> ClientConnection:
        try:
            return await connect(
                self.url,
                open_timeout=None,  # the whole handshake runs under connect_timeout_s
                max_size=self.max_frame_bytes,
                ping_interval=self._ping_interval_s,
                ping_timeout=self._ping_timeout_s,
                close_timeout=self._close_timeout_s,
                compression=None,
            )
        except InvalidURI as exc:
            raise HandshakeFailed(f"bad gateway url {self.url!r}: {exc}", code="BAD_URL") from None
        except InvalidHandshake as exc:
            raise GatewayUnavailable(f"websocket upgrade to {self.url} failed: {exc}") from None
        except OSError as exc:
            raise GatewayUnavailable(f"cannot connect to {self.url}: {exc}") from None

    async def _handshake(self, ws: ClientConnection) -> Hello:
        await self._await_challenge(ws)
        request_id = str(uuid.uuid4())
        await ws.send(frames.encode_request(request_id, "connect", self._connect_params()))
        response = await self._await_response(ws, request_id)
        if not response.ok:
            error = GatewayRejected.from_error(response.error)
            raise HandshakeFailed(f"gateway refused connect: {error.message}", code=error.code)
        return _parse_hello(response.payload)

    def _connect_params(self) -> dict[str, Any]:
        return {
            "minProtocol": MIN_PROTOCOL,
            "maxProtocol": MAX_PROTOCOL,
            "client": {
                "id": CLIENT_ID,
                "version": self.client_version,
                "platform": sys.platform,
                "mode": "backend",
            },
            "role": "operator",
            "scopes": list(self.scopes),
            "auth": {"token": self._token},
        }

    async def _await_challenge(self, ws: ClientConnection) -> None:
        while True:
            frame = await self._recv_handshake_frame(ws)
            if isinstance(frame, frames.Event) and frame.event == "connect.challenge":
                return
            self._reject("frame before connect.challenge", frame_type=type(frame).__name__)

    async def _await_response(self, ws: ClientConnection, request_id: str) -> frames.Response:
        while True:
            frame = await self._recv_handshake_frame(ws)
            if isinstance(frame, frames.Response) and frame.id == request_id:
                return frame
            self._reject("frame before hello-ok", frame_type=type(frame).__name__)

    async def _recv_handshake_frame(self, ws: ClientConnection) -> frames.Frame:
        while True:
            raw = await ws.recv()
            try:
                return frames.parse_frame(raw)
            except frames.FrameError as exc:
                self._reject(str(exc))

    async def _abandon(self) -> None:
        """Drop a socket whose handshake failed, without waiting on a slow peer."""
        ws, self._ws = self._ws, None
        self._closed.set()
        if ws is not None:
            ws.transport.abort()
            with contextlib.suppress(Exception):
                await ws.wait_closed()

    # --- calls ----------------------------------------------------------------

    async def call(
        self, method: str, params: dict[str, Any] | None = None, *, timeout_s: float | None = None
    ) -> Any:
        """Send one request and return its payload; typed errors otherwise."""
        ws = self._ws
        if ws is None or self._closed.is_set():
            raise self._close_error or GatewayUnavailable(f"not connected to {self.url}")
        timeout = self.call_timeout_s if timeout_s is None else timeout_s
        request_id = str(uuid.uuid4())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            async with asyncio.timeout(timeout):
                await ws.send(frames.encode_request(request_id, method, params or {}))
                response: frames.Response = await future
        except TimeoutError:
            self._late_ids.append(request_id)
            raise GatewayTimeout(f"{method} got no answer within {timeout:g} s") from None
        except ConnectionClosed:
            raise GatewayUnavailable(f"connection to {self.url} closed during {method}") from None
        finally:
            self._pending.pop(request_id, None)
        if not response.ok:
            raise GatewayRejected.from_error(response.error)
        return response.payload

    # --- reading --------------------------------------------------------------

    async def _read_frames(self, ws: ClientConnection) -> None:
        reason: GatewayError | None = None
        try:
            async for raw in ws:
                self._last_frame_at = time.monotonic()
                try:
                    self._handle_raw(raw)
                except Exception:
                    # Our bug on one odd frame must not end the stream for the others.
                    log.exception("frame_handling_failed", url=self.url)
        except ConnectionClosed as exc:
            reason = _closed_while_connected(exc)
        except Exception as exc:  # a reader that dies silently would hang every call
            log.exception("gateway_reader_failed", url=self.url)
            reason = GatewayUnavailable(f"reader failed: {exc!r}")
        else:
            reason = _closed_while_connected(ws.close_code, ws.close_reason)
        self._finish(reason)

    def _handle_raw(self, raw: str | bytes) -> None:
        if self.wants_event is not None and isinstance(raw, str):
            # A gateway streams many events its client does not use (agent
            # deltas, chat): naming them from the frame's head spares the JSON parse.
            head = _EVENT_HEAD.match(raw)
            if head is not None and not self.wants_event(head.group(1)):
                self.events_ignored += 1
                return
        try:
            frame = frames.parse_frame(raw)
        except frames.FrameError as exc:
            self._reject(str(exc))
            return
        if isinstance(frame, frames.Response):
            self._resolve(frame)
        elif isinstance(frame, frames.Event):
            self._dispatch_event(frame)
        else:
            self._reject("gateway sent a request; clients serve no methods", method=frame.method)

    def _resolve(self, response: frames.Response) -> None:
        future = self._pending.get(response.id)
        if future is None:
            if response.id in self._late_ids:
                log.info("late_response_dropped", url=self.url, id=response.id)
            else:
                self._reject("response to an unknown request id", id=response.id[:80])
            return
        if not future.done():
            future.set_result(response)

    def _dispatch_event(self, event: frames.Event) -> None:
        problem = _event_payload_problem(event)
        if problem:
            self._reject(problem, gateway_event=event.event)
            return
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:
            # The callback is the bridge's; its bug must not take the connection down.
            log.exception("event_callback_failed", url=self.url, gateway_event=event.event)

    def _reject(self, reason: str, **context: Any) -> None:
        log.warning("frame_rejected", url=self.url, reason=reason, **context)

    # --- liveness -------------------------------------------------------------

    async def _watch_ticks(self, ws: ClientConnection) -> None:
        """Close a connection that has been silent for two tick intervals."""
        assert self.hello is not None
        dead_after = TICKS_BEFORE_DEAD * self.hello.tick_interval_s
        check_every = min(max(self.hello.tick_interval_s / 4, 0.01), 1.0)
        while not self._closed.is_set():
            silent_for = time.monotonic() - self._last_frame_at
            if silent_for > dead_after:
                log.warning(
                    "gateway_connection_stale",
                    url=self.url,
                    silent_s=round(silent_for, 3),
                    tick_interval_s=self.hello.tick_interval_s,
                )
                self._close_error = GatewayUnavailable(
                    f"no frame from {self.url} for {silent_for:.1f} s "
                    f"(tick interval {self.hello.tick_interval_s:g} s)",
                    code="TICK_TIMEOUT",
                )
                # The peer is not answering: a closing handshake would only wait on it.
                ws.transport.abort()
                return
            await asyncio.sleep(check_every)

    # --- closing --------------------------------------------------------------

    def _finish(self, reason: GatewayError | None) -> None:
        """The connection is over: fail every pending call, wake ``wait_closed``."""
        closed_by_us = self._closed.is_set()
        if self._close_error is None and not closed_by_us:
            self._close_error = reason
        error = self._close_error or GatewayUnavailable(f"connection to {self.url} closed")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(GatewayUnavailable(error.message, code=error.code))
        self._pending.clear()
        if not closed_by_us and self._close_error is not None:
            log.warning("gateway_disconnected", url=self.url, reason=self._close_error.message)
        self._closed.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def close_error(self) -> GatewayError | None:
        """Why the connection ended, or None when we closed it ourselves (or it is open)."""
        return self._close_error

    async def wait_closed(self) -> GatewayError | None:
        """Return once the connection is over, with why (None when we closed it)."""
        await self._closed.wait()
        return self._close_error

    async def close(self) -> None:
        """Close the connection (a closing handshake bounded by close_timeout_s)."""
        ws = self._ws
        if ws is None:
            self._closed.set()
            return
        if not self._closed.is_set():
            self._closed.set()
            self._fail_pending_on_close()
        with contextlib.suppress(Exception):
            await ws.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _fail_pending_on_close(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(GatewayUnavailable(f"connection to {self.url} was closed"))
        self._pending.clear()


# --- helpers --------------------------------------------------------------------


def _parse_hello(payload: object) -> Hello:
    if not isinstance(payload, dict) or payload.get("type") != "hello-ok":
        raise ProtocolViolation("connect answer is not a hello-ok object")
    protocol = payload.get("protocol")
    if not isinstance(protocol, int) or not MIN_PROTOCOL <= protocol <= MAX_PROTOCOL:
        raise HandshakeFailed(
            f"gateway speaks protocol {protocol!r}, we speak {MIN_PROTOCOL}-{MAX_PROTOCOL}",
            code="PROTOCOL_MISMATCH",
        )
    server = _object(payload.get("server"))
    features = _object(payload.get("features"))
    policy = _object(payload.get("policy"))
    tick_ms = policy.get("tickIntervalMs")
    max_payload = policy.get("maxPayload")
    return Hello(
        protocol=protocol,
        server_version=_string(server.get("version")),
        boot_id=_string(server.get("bootId")) or None,
        conn_id=_string(server.get("connId")),
        methods=_strings(features.get("methods")),
        events=_strings(features.get("events")),
        tick_interval_s=(
            tick_ms / 1000.0
            if isinstance(tick_ms, int | float) and not isinstance(tick_ms, bool) and tick_ms > 0
            else DEFAULT_TICK_INTERVAL_S
        ),
        max_payload=max_payload if isinstance(max_payload, int) else None,
        scopes=_granted(payload.get("auth")),
    )


def _granted(auth: object) -> frozenset[str] | None:
    """hello-ok's ``auth.scopes``, when the gateway reports them."""
    granted = auth.get("scopes") if isinstance(auth, dict) else None
    return _strings(granted) if isinstance(granted, list) else None


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""


def _strings(value: object) -> frozenset[str]:
    if not isinstance(value, list):
        return frozenset()
    return frozenset(item for item in value if isinstance(item, str))


def _event_payload_problem(event: frames.Event) -> str:
    """Why an event's payload has the wrong shape, or "" when it is fine."""
    expected = _EVENT_PAYLOAD_KEYS.get(event.event)
    if expected is None and event.event not in _OBJECT_PAYLOAD_EVENTS:
        return ""
    if not isinstance(event.payload, dict):
        return f"event {event.event!r} payload is not an object"
    for key, kind in expected or ():
        value = event.payload.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"event {event.event!r} payload field {key!r} has the wrong type"
    return ""


def _closed_during_handshake(exc: ConnectionClosed) -> GatewayError:
    code = exc.rcvd.code if exc.rcvd is not None else None
    if code == CLOSE_GATEWAY_STARTING:
        return GatewayUnavailable("gateway starting", code="GATEWAY_STARTING")
    if code == 1008:
        reason = exc.rcvd.reason if exc.rcvd is not None else ""
        return HandshakeFailed(
            f"gateway closed the handshake as a policy violation: {reason}",
            code="POLICY_VIOLATION",
        )
    return GatewayUnavailable(f"connection closed during handshake (code {code})")


def _closed_while_connected(
    exc_or_code: ConnectionClosed | int | None, reason: str | None = None
) -> GatewayUnavailable:
    if isinstance(exc_or_code, ConnectionClosed):
        rcvd = exc_or_code.rcvd
        code, reason = (rcvd.code, rcvd.reason) if rcvd is not None else (None, "no close frame")
    else:
        code = exc_or_code
    return GatewayUnavailable(f"connection closed (code {code}, {reason or 'no reason'})")
