"""The simulated gateway's WebSocket server (``websockets`` 17, loopback only).

Speaks the OpenClaw protocol subset and Runboard's registry methods exactly as
docs/protocol.md says: ``connect.challenge`` first, ``connect`` required
first (else close 1008), a wrong token gets ``AUTH_TOKEN_MISMATCH`` and a
close, a gateway still starting closes new sockets with 1013. Everything that
happens later (turns, waits, settles) runs on the registry's scheduler, which
one asyncio task pumps. Each connection has its own send queue and writer, so
the synchronous registry can emit events without awaiting.

A restarted gateway is a new ``SimGateway`` on the same port: new bootId,
empty registry.

``plugin=False`` plays a stock OpenClaw without Runboard's companion plugin:
``hello-ok`` lists no ``runboard.registry.*`` method or event, and calling
one answers ``INVALID_REQUEST`` "unknown method: <name>" (the bridge then
runs in observer mode).

Options that make the simulation look more like real OpenClaw with the
companion plugin (off by default, so the demo keeps ``store_disagrees``; the
contract tests turn them on, docs/protocol.md §3): ``distinct_registry_ids``
gives registry operations ids of their own (``op-<boot>-<n>``, not the chat run
id) and the registry a ``bootId`` that is not ``hello-ok``'s (2026.5.x send
none there); ``registry_reports_store=False`` sends ``sessions: {}`` in
snapshots and no ``session.status`` changes. ``waiters_in_active_run_ids``
lists waiting messages in ``sessions.list`` ``activeRunIds``, which neither
real release does (off by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response as HttpResponse

from gateway_bridge import frames
from simgateway import methods
from simgateway.faults import SubscriberFaults
from simgateway.gatewaylog import GatewayLog
from simgateway.profiles import Knobs, get_profile
from simgateway.records import ms
from simgateway.registry import ReplyRunRegistry
from simgateway.scheduler import Scheduler

log = structlog.get_logger(__name__)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
HANDSHAKE_TIMEOUT_S = 15.0
# Registry changes kept for a subscriber resuming from its last seq (the plugin keeps as many).
RECENT_CHANGES = 10_000
PROTOCOL_MIN = 3
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013
CLOSE_GOING_AWAY = 1001
CLOSE_SERVICE_RESTART = 1012
READY_PATHS = frozenset({"/readyz", "/ready", "/healthz", "/health"})


class Connection:
    """One client socket: its scopes, send queue and per-connection event seq."""

    def __init__(self, ws: ServerConnection, conn_id: str) -> None:
        self.ws = ws
        self.conn_id = conn_id
        self.scopes: frozenset[str] = frozenset()
        self.ready = False
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.faults: SubscriberFaults | None = None
        self.writer: asyncio.Task[None] | None = None
        self._event_seq = 0

    def send(self, frame: str) -> None:
        self.queue.put_nowait(frame)

    def next_event_seq(self) -> int:
        self._event_seq += 1
        return self._event_seq


class SimGateway:
    def __init__(
        self,
        *,
        name: str = "sim",
        profile: str = "2026.9",
        token: str = "sim-token",
        seed: int = 0,
        start_delay_s: float = 0.0,
        tick_interval_s: float = 15.0,
        plugin: bool = True,
        distinct_registry_ids: bool = False,
        registry_reports_store: bool = True,
        waiters_in_active_run_ids: bool = False,
        **knobs: Any,
    ) -> None:
        self.name = name
        self.plugin = plugin
        self.profile = get_profile(profile)
        self.knobs = Knobs.from_kwargs(**knobs)
        self.token = token
        self.seed = seed
        self.start_delay_s = start_delay_s
        self.tick_interval_s = tick_interval_s
        self.scheduler = Scheduler(time.time)
        self.registry = ReplyRunRegistry(
            profile=self.profile,
            knobs=self.knobs,
            scheduler=self.scheduler,
            rng=random.Random(seed),
            distinct_ids=distinct_registry_ids,
            reports_store=registry_reports_store,
            waiters_in_active_run_ids=waiters_in_active_run_ids,
        )
        # hello-ok's server.bootId: the registry's own unless distinct ids are asked for;
        # then a separate id on 2026.9 and none on 2026.5.x (as seen on 2026.9.6 / 5.28).
        self.server_boot_id: str | None = self.registry.boot_id
        if distinct_registry_ids:
            self.server_boot_id = uuid.uuid4().hex if self.profile.hello_boot_id else None
        self.logs = GatewayLog()
        # Tests: answer these methods only after so many seconds (method → delay).
        self.answer_delays_s: dict[str, float] = {}
        self.port: int | None = None
        self.url = ""
        self._fault_rng = random.Random(seed + 1)
        self._connections: set[Connection] = set()
        self._subscribers: list[Connection] = []
        # The latest registry changes, so a subscriber that lost its connection (or a
        # bridge taking over a dead one's gateway) can resume from its last seq.
        self._recent: deque[tuple[int, str]] = deque(maxlen=RECENT_CHANGES)
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._started_at = 0.0
        self._running = False

    # --- lifecycle ------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"the simulated gateway binds loopback only, not {host!r}")
        self.registry.listeners.append(self._on_change)
        self.registry.event_listeners.append(self._on_event)
        self.registry.log_listeners.append(self._on_log)
        self.scheduler.on_schedule = self._wake.set
        self._started_at = time.time()
        self.registry.start()
        self._server = await serve(
            self._handle,
            host,
            port,
            process_request=self._process_http,
            max_size=frames.MAX_FRAME_BYTES,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"
        self._running = True
        self._tasks = [
            asyncio.create_task(self._pump(), name=f"{self.name}-pump"),
            asyncio.create_task(self._tick(), name=f"{self.name}-tick"),
        ]
        log.info(
            "sim_gateway_started",
            gateway=self.name,
            profile=self.profile.name,
            url=self.url,
            boot_id=self.registry.boot_id,
        )

    async def stop(self, *, restart_expected_ms: int | None = None) -> None:
        """Graceful: registry ``stopping``, a ``shutdown`` event to everyone, then close."""
        if not self._running:
            return
        self._running = False
        self.registry.stopping("gateway stopping", restart_expected_ms)
        shutdown: dict[str, Any] = {"reason": "gateway stopping"}
        if restart_expected_ms is not None:
            shutdown["restartExpectedMs"] = restart_expected_ms
        self._broadcast("shutdown", shutdown, with_seq=False)
        code = CLOSE_SERVICE_RESTART if restart_expected_ms is not None else CLOSE_GOING_AWAY
        await asyncio.gather(*(self._drain_and_close(c, code) for c in list(self._connections)))
        await self._shut_server()
        log.info("sim_gateway_stopped", gateway=self.name, boot_id=self.registry.boot_id)

    async def kill(self) -> None:
        """Abrupt: drop every socket without a close frame; the registry dies with us."""
        if not self._running:
            return
        self._running = False
        if self._server is not None:
            self._server.close(close_connections=False)
        for conn in list(self._connections):
            transport = conn.ws.transport
            if transport is not None:
                transport.abort()
        await self._shut_server()
        self.registry.listeners.clear()
        log.info("sim_gateway_killed", gateway=self.name, boot_id=self.registry.boot_id)

    async def _shut_server(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)

    async def _drain_and_close(self, conn: Connection, code: int) -> None:
        """Let the writer send what is queued (the shutdown event), then close."""
        if conn.writer is not None:
            conn.queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(conn.writer), 2.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.ws.close(code, "gateway stopping"), 2.0)

    @property
    def running(self) -> bool:
        return self._running

    def uptime_ms(self) -> int:
        return ms(time.time() - self._started_at)

    def _starting(self) -> bool:
        return time.time() - self._started_at < self.start_delay_s

    # --- the simulated world -----------------------------------------------------

    def send_inbound(self, session_key: str, text: str, *, turn_kind: str = "visible") -> str:
        """A channel message arrives for a session. Returns its message (= run) id."""
        run_id, _ = self.registry.dispatch(session_key, text, turn_kind=turn_kind)
        return run_id

    def abort(self, session_key: str, run_id: str | None = None) -> list[str]:
        """A user's /stop: abort the session's waiting messages and running turn."""
        return self.registry.abort(session_key, run_id)

    async def _pump(self) -> None:
        """Fire the registry's timers at their due times."""
        while True:
            due = self.scheduler.next_due()
            timeout = None if due is None else max(0.0, due - time.time())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            try:
                self.scheduler.run_due()
            except Exception:
                log.exception("sim_timer_failed", gateway=self.name)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval_s)
            self._broadcast("tick", {"ts": ms(time.time())}, with_seq=False)

    # --- outputs ---------------------------------------------------------------

    def _on_change(self, payload: dict[str, Any]) -> None:
        if not self.plugin:
            return
        frame = frames.encode_event("runboard.registry", payload)
        self._recent.append((payload["seq"], frame))
        for conn in self._subscribers:
            if conn.faults is not None:
                conn.faults.deliver(frame)
            else:
                conn.send(frame)

    def _on_event(self, name: str, payload: dict[str, Any]) -> None:
        self._broadcast(name, payload, scope=methods.READ)

    def _on_log(self, level: str, text: str) -> None:
        self.logs.append(level, text)

    def _broadcast(
        self, name: str, payload: dict[str, Any], *, with_seq: bool = True, scope: str = ""
    ) -> None:
        for conn in self._connections:
            if not conn.ready or (scope and not methods.has_scope(conn.scopes, scope)):
                continue
            if conn.faults is not None:
                conn.faults.maybe_garbage()
            seq = conn.next_event_seq() if with_seq else None
            conn.send(frames.encode_event(name, payload, seq))

    def subscribe(self, conn: Connection, boot_id: str | None, after: int | None) -> bool:
        """Send ``conn`` every later change; first, when asked, those after ``after``.

        Returns whether the changes after ``after`` could all be replayed: the
        same boot and still in the recent-changes buffer.
        """
        replayed = False
        if after is not None and boot_id == self.registry.boot_id:
            oldest = self._recent[0][0] if self._recent else self.registry.seq + 1
            if after >= self.registry.seq or after + 1 >= oldest:
                replayed = True
                for seq, frame in self._recent:
                    if seq > after:
                        conn.send(frame)
        if conn in self._subscribers:
            return replayed
        knobs = self.knobs
        if knobs.duplicate_rate or knobs.reorder_window > 1 or knobs.garbage_rate:
            rng = random.Random(self._fault_rng.random())
            conn.faults = SubscriberFaults(knobs, rng, conn.send, self._call_later)
        self._subscribers.append(conn)
        return replayed

    @staticmethod
    def _call_later(delay_s: float, callback: Callable[[], None]) -> object:
        return asyncio.get_running_loop().call_later(delay_s, callback)

    # --- connections -----------------------------------------------------------

    def _process_http(self, ws: ServerConnection, request: HttpRequest) -> HttpResponse | None:
        """Plain HTTP readiness on the same port, as OpenClaw's ``/readyz``."""
        path = request.path.split("?", 1)[0]
        if path not in READY_PATHS:
            return None
        if self._starting():
            return ws.respond(HTTPStatus.SERVICE_UNAVAILABLE, "starting\n")
        return ws.respond(HTTPStatus.OK, '{"ok":true,"status":"ready"}\n')

    async def _handle(self, ws: ServerConnection) -> None:
        if self._starting() or not self._running:
            await ws.close(CLOSE_TRY_AGAIN, "gateway starting")
            return
        conn = Connection(ws, str(uuid.uuid4()))
        self._connections.add(conn)
        try:
            await ws.send(
                frames.encode_event(
                    "connect.challenge", {"nonce": str(uuid.uuid4()), "ts": ms(time.time())}
                )
            )
            if not await self._handshake(conn):
                return
            conn.writer = asyncio.create_task(self._write(conn))
            async for raw in ws:
                self._on_frame(conn, raw)
        except ConnectionClosed:
            pass
        finally:
            self._connections.discard(conn)
            if conn in self._subscribers:
                self._subscribers.remove(conn)
            if conn.writer is not None:
                conn.queue.put_nowait(None)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.writer, 2.0)

    async def _write(self, conn: Connection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while (frame := await conn.queue.get()) is not None:
                await conn.ws.send(frame)

    async def _handshake(self, conn: Connection) -> bool:
        ws = conn.ws
        try:
            raw = await asyncio.wait_for(ws.recv(), HANDSHAKE_TIMEOUT_S)
        except TimeoutError:
            await ws.close(CLOSE_POLICY, "handshake timeout")
            return False
        try:
            frame = frames.parse_frame(raw)
        except frames.FrameError as exc:
            log.warning("frame_rejected", gateway=self.name, conn_id=conn.conn_id, reason=str(exc))
            frame = None
        if not isinstance(frame, frames.Request) or frame.method != "connect":
            await ws.close(CLOSE_POLICY, "first request must be connect")
            return False
        try:
            hello = self._hello(conn, frame.params)
        except methods.RequestError as exc:
            log.warning(
                "sim_connect_refused", gateway=self.name, conn_id=conn.conn_id, code=exc.code
            )
            await ws.send(frames.encode_response(frame.id, error=exc.as_error()))
            await ws.close(CLOSE_POLICY, exc.message[:100])
            return False
        await ws.send(frames.encode_response(frame.id, hello))
        conn.ready = True
        return True

    def _hello(self, conn: Connection, params: dict[str, Any]) -> dict[str, Any]:
        protocol = self._negotiate(params)
        client = params.get("client")
        if not isinstance(client, dict) or not isinstance(client.get("id"), str):
            raise methods.RequestError("INVALID_REQUEST", "invalid connect params: 'client.id'")
        if params.get("role") != "operator":
            raise methods.RequestError(
                "INVALID_REQUEST", "invalid connect params: 'role' must be 'operator'"
            )
        scopes = params.get("scopes", [])
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise methods.RequestError(
                "INVALID_REQUEST", "invalid connect params: 'scopes' must be a list of strings"
            )
        auth = params.get("auth")
        token = auth.get("token") if isinstance(auth, dict) else None
        if token != self.token:
            raise methods.RequestError(
                "AUTH_TOKEN_MISMATCH", "unauthorized: gateway token mismatch"
            )
        conn.scopes = frozenset(scopes) & frozenset(methods.SCOPE_IMPLIES)
        server: dict[str, Any] = {"version": self.profile.version, "connId": conn.conn_id}
        if self.server_boot_id is not None:
            server["bootId"] = self.server_boot_id
        return {
            "type": "hello-ok",
            "protocol": protocol,
            "server": server,
            "features": {
                "methods": list(methods.method_names(plugin=self.plugin)),
                "events": list(methods.event_names(plugin=self.plugin)),
            },
            "auth": {"role": "operator", "scopes": sorted(conn.scopes)},
            "policy": {
                "tickIntervalMs": ms(self.tick_interval_s),
                "maxPayload": frames.MAX_FRAME_BYTES,
                "maxBufferedBytes": 2 * frames.MAX_FRAME_BYTES,
            },
        }

    def _negotiate(self, params: dict[str, Any]) -> int:
        low, high = params.get("minProtocol"), params.get("maxProtocol")
        if not isinstance(low, int) or not isinstance(high, int) or low > high:
            raise methods.RequestError(
                "INVALID_REQUEST",
                "invalid connect params: 'minProtocol' and 'maxProtocol' must be integers,"
                " min <= max",
            )
        protocol = min(high, self.profile.protocol)
        if protocol < max(low, PROTOCOL_MIN):
            raise methods.RequestError(
                "PROTOCOL_MISMATCH",
                f"protocol mismatch: server speaks {PROTOCOL_MIN}-{self.profile.protocol}",
            )
        return protocol

    def _on_frame(self, conn: Connection, raw: str | bytes) -> None:
        try:
            frame = frames.parse_frame(raw)
        except frames.FrameError as exc:
            log.warning("frame_rejected", gateway=self.name, conn_id=conn.conn_id, reason=str(exc))
            return
        if not isinstance(frame, frames.Request):
            log.warning(
                "frame_rejected",
                gateway=self.name,
                conn_id=conn.conn_id,
                reason=f"a client may only send requests, not {type(frame).__name__.lower()}s",
            )
            return
        answer = self._answer(conn, frame)
        delay_s = self.answer_delays_s.get(frame.method, 0.0)
        if delay_s > 0:  # a slow gateway: it acts at once but answers late
            asyncio.get_running_loop().call_later(delay_s, conn.send, answer)
            return
        conn.send(answer)

    def _answer(self, conn: Connection, request: frames.Request) -> str:
        if request.method == "connect":
            error = methods.RequestError("INVALID_REQUEST", "already connected")
            return frames.encode_response(request.id, error=error.as_error())
        try:
            payload = methods.call(self, conn, request.method, request.params)
        except methods.RequestError as exc:
            return frames.encode_response(request.id, error=exc.as_error())
        except Exception:
            log.exception("sim_method_failed", gateway=self.name, method=request.method)
            internal = {"code": "UNAVAILABLE", "message": "internal error", "retryable": True}
            return frames.encode_response(request.id, error=internal)
        return frames.encode_response(request.id, payload)
