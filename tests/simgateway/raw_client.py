"""A bare ``websockets`` client for protocol tests: frames in, frames out, no bridge."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

SCOPES = ["operator.read", "operator.write", "operator.admin"]
WAIT_S = 3.0  # generous upper bounds, never timing assertions
UNTIL_S = 10.0


def connect_params(token: str, scopes: list[str] | None = None) -> dict[str, Any]:
    return {
        "minProtocol": 3,
        "maxProtocol": 4,
        "client": {
            "id": "gateway-client",
            "version": "test",
            "platform": "linux",
            "mode": "backend",
        },
        "role": "operator",
        "scopes": SCOPES if scopes is None else scopes,
        "auth": {"token": token},
    }


class RawClient:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def open(
        cls, url: str, token: str = "sim-token", scopes: list[str] | None = None
    ) -> tuple[RawClient, dict[str, Any]]:
        client = cls(await connect(url))
        challenge = await client.recv()
        assert challenge["event"] == "connect.challenge"
        hello = await client.request("connect", connect_params(token, scopes))
        return client, hello

    async def recv(self) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), WAIT_S))

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request; return its response frame, keeping events seen meanwhile."""
        request_id = str(uuid.uuid4())
        await self.ws.send(
            json.dumps({"type": "req", "id": request_id, "method": method, "params": params or {}})
        )
        while True:
            frame = await self.recv()
            if frame.get("type") == "res" and frame.get("id") == request_id:
                return frame
            self.events.append(frame)

    async def payload(self, method: str, params: dict[str, Any] | None = None) -> Any:
        frame = await self.request(method, params)
        assert frame["ok"], frame
        return frame["payload"]

    async def registry_events_until(self, predicate: Any) -> list[dict[str, Any]]:
        """Registry payloads received so far and from now on, until one matches."""
        seen = [e["payload"] for e in self.events if e.get("event") == "runboard.registry"]
        deadline = asyncio.get_running_loop().time() + UNTIL_S
        while not any(predicate(p) for p in seen):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"no matching registry event in {UNTIL_S} s")
            frame = await self.recv()
            self.events.append(frame)
            if frame.get("event") == "runboard.registry":
                seen.append(frame["payload"])
        return seen

    async def close(self) -> None:
        await self.ws.close()
