"""A tiny scripted gateway on a loopback socket, for what the simulated gateway cannot do.

It speaks the handshake of docs/protocol.md §1 (challenge, connect, hello-ok)
and then hands the connection to a per-test script: send hostile frames,
answer late, drop the socket. Real ``websockets`` server, real socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from gateway_bridge import frames

Script = Callable[[ServerConnection], Awaitable[None]]
Answer = Callable[[frames.Request], Any]


def now_ms() -> int:
    return int(time.time() * 1000)


class ScriptedGateway:
    def __init__(
        self,
        script: Script | None = None,
        *,
        token: str = "scripted-token",
        methods: Sequence[str] = ("health", "status", "sessions.list", "chat.abort"),
        tick_interval_ms: int = 15_000,
        protocol: int = 4,
        boot_id: str | None = "boot-scripted",
        before_handshake: Script | None = None,
    ) -> None:
        self.script = script or self.serve_requests
        self.token = token
        self.methods = list(methods)
        self.tick_interval_ms = tick_interval_ms
        self.protocol = protocol
        self.boot_id = boot_id
        self.before_handshake = before_handshake
        self.answers: dict[str, Answer] = {"health": lambda req: {"ok": True, "ts": now_ms()}}
        self.connect_requests: list[frames.Request] = []
        self.requests: list[frames.Request] = []
        self.connections: list[ServerConnection] = []
        self._server: Server | None = None
        self.url = ""

    async def __aenter__(self) -> ScriptedGateway:
        self._server = await serve(self._handle, "127.0.0.1", 0, max_size=None)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        for ws in self.connections:
            ws.transport.abort()
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        with contextlib.suppress(ConnectionClosed):
            if self.before_handshake is not None:
                await self.before_handshake(ws)
                return
            if await self.handshake(ws):
                await self.script(ws)

    async def handshake(self, ws: ServerConnection) -> bool:
        await ws.send(frames.encode_event("connect.challenge", {"nonce": "n-1", "ts": now_ms()}))
        request = frames.parse_frame(await ws.recv())
        assert isinstance(request, frames.Request) and request.method == "connect"
        self.connect_requests.append(request)
        if request.params.get("auth", {}).get("token") != self.token:
            error = {"code": "AUTH_TOKEN_MISMATCH", "message": "gateway token mismatch"}
            await ws.send(frames.encode_response(request.id, error=error))
            await ws.close(1008, "unauthorized")
            return False
        await ws.send(frames.encode_response(request.id, self.hello()))
        return True

    def hello(self) -> dict[str, Any]:
        server: dict[str, Any] = {"version": "scripted-1", "connId": "conn-1"}
        if self.boot_id is not None:
            server["bootId"] = self.boot_id
        return {
            "type": "hello-ok",
            "protocol": self.protocol,
            "server": server,
            "features": {"methods": self.methods, "events": ["tick", "shutdown"]},
            "policy": {"tickIntervalMs": self.tick_interval_ms, "maxPayload": 26214400},
        }

    async def serve_requests(self, ws: ServerConnection) -> None:
        """Answer every request from ``self.answers``; unknown methods get INVALID_REQUEST."""
        async for raw in ws:
            request = frames.parse_frame(raw)
            assert isinstance(request, frames.Request)
            self.requests.append(request)
            await self.answer(ws, request)

    async def answer(self, ws: ServerConnection, request: frames.Request) -> None:
        answer = self.answers.get(request.method)
        if answer is None:
            error = {"code": "INVALID_REQUEST", "message": "unknown method"}
            await ws.send(frames.encode_response(request.id, error=error))
            return
        await ws.send(frames.encode_response(request.id, answer(request)))


async def next_request(ws: ServerConnection) -> frames.Request:
    request = frames.parse_frame(await ws.recv())
    assert isinstance(request, frames.Request)
    return request


async def until(predicate: Callable[[], bool], timeout_s: float = 3.0) -> None:
    """Wait for ``predicate`` to hold; the timeout is only a generous upper bound."""
    # Polling, because the predicates look at state no event announces.
    async with asyncio.timeout(timeout_s):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.01)
