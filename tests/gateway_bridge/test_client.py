"""GatewayClient against a scripted loopback gateway: handshake, calls, hostile peers."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from structlog.testing import capture_logs
from websockets.asyncio.server import ServerConnection

from gateway_bridge import frames
from gateway_bridge.client import GatewayClient
from gateway_bridge.errors import (
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
    HandshakeFailed,
)
from tests.gateway_bridge.scripted import ScriptedGateway, next_request, now_ms, until

TOKEN = "scripted-token"


def client_for(gw: ScriptedGateway, **kwargs: object) -> GatewayClient:
    options: dict[str, object] = {"connect_timeout_s": 3.0, "call_timeout_s": 2.0, **kwargs}
    return GatewayClient(gw.url, TOKEN, **options)  # type: ignore[arg-type]


async def test_connect_returns_what_the_gateway_said_in_hello_ok() -> None:
    async with ScriptedGateway(tick_interval_ms=30_000) as gw:
        client = client_for(gw)
        hello = await client.connect()
        await client.close()

    assert hello.protocol == 4
    assert hello.server_version == "scripted-1"
    assert hello.boot_id == "boot-scripted"
    assert hello.conn_id == "conn-1"
    assert "sessions.list" in hello.methods
    assert hello.tick_interval_s == 30.0


async def test_connect_sends_the_documented_connect_request() -> None:
    async with ScriptedGateway() as gw:
        client = client_for(gw)
        await client.connect()
        await client.close()

    [request] = gw.connect_requests
    params = request.params
    assert (params["minProtocol"], params["maxProtocol"]) == (3, 4)
    assert params["client"]["id"] == "gateway-client"
    assert params["client"]["mode"] == "backend"
    assert params["role"] == "operator"
    assert params["scopes"] == ["operator.read", "operator.write", "operator.admin"]
    assert params["auth"] == {"token": TOKEN}


async def test_a_gateway_without_a_boot_id_gives_a_hello_without_one() -> None:
    async with ScriptedGateway(boot_id=None) as gw:
        client = client_for(gw)
        hello = await client.connect()
        await client.close()

    assert hello.boot_id is None


async def test_a_call_returns_the_payload_of_its_own_response() -> None:
    async with ScriptedGateway() as gw:
        gw.answers["status"] = lambda req: {"version": "scripted-1", "echo": req.params}
        client = client_for(gw)
        await client.connect()
        first, second = await asyncio.gather(
            client.call("status", {"n": 1}), client.call("status", {"n": 2})
        )
        await client.close()

    assert first["echo"] == {"n": 1}
    assert second["echo"] == {"n": 2}


async def test_a_wrong_token_fails_the_handshake_and_retrying_cannot_help() -> None:
    async with ScriptedGateway(token="another-token") as gw:
        client = client_for(gw)
        with pytest.raises(HandshakeFailed) as caught:
            await client.connect()

    assert caught.value.code == "AUTH_TOKEN_MISMATCH"
    assert caught.value.retryable is False
    assert client.closed


async def test_a_gateway_speaking_another_protocol_fails_the_handshake() -> None:
    async with ScriptedGateway(protocol=2) as gw:
        with pytest.raises(HandshakeFailed) as caught:
            await client_for(gw).connect()

    assert caught.value.code == "PROTOCOL_MISMATCH"


async def test_a_gateway_still_starting_closes_with_1013_and_is_worth_retrying() -> None:
    async def starting(ws: ServerConnection) -> None:
        await ws.close(1013, "gateway starting")

    async with ScriptedGateway(before_handshake=starting) as gw:
        with pytest.raises(GatewayUnavailable, match="gateway starting") as caught:
            await client_for(gw).connect()

    assert caught.value.retryable is True


async def test_a_gateway_that_never_sends_the_challenge_times_out_the_connect() -> None:
    async def silent(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with ScriptedGateway(before_handshake=silent) as gw:
        with pytest.raises(GatewayTimeout):
            await client_for(gw, connect_timeout_s=0.3).connect()


async def test_a_closed_port_is_unavailable_and_worth_retrying() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    with pytest.raises(GatewayUnavailable) as caught:
        await GatewayClient(f"ws://127.0.0.1:{port}", TOKEN, connect_timeout_s=2.0).connect()

    assert caught.value.retryable is True


async def test_a_frame_before_the_challenge_is_rejected_and_the_handshake_goes_on() -> None:
    async def noisy_then_normal(ws: ServerConnection) -> None:
        await ws.send("garbage before the challenge")
        await ws.send(frames.encode_event("health", {"ok": True}))
        if await gw.handshake(ws):
            await gw.serve_requests(ws)

    gw = ScriptedGateway(before_handshake=noisy_then_normal)
    async with gw:
        client = client_for(gw)
        with capture_logs() as logs:
            hello = await client.connect()
        await client.close()

    assert hello.protocol == 4
    assert [e["event"] for e in logs].count("frame_rejected") == 2


HOSTILE_FRAMES: list[str | bytes] = [
    "this is {not json",
    "x" * (1024 * 1024),
    json.dumps([1, 2, 3]),
    json.dumps("a string"),
    json.dumps({"type": "res", "id": "nobody-asked", "ok": True, "payload": {}}),
    json.dumps({"type": "res", "id": "x", "ok": "yes"}),
    json.dumps({"type": "teleport", "id": "x"}),
    json.dumps({"type": "event", "event": "tick", "payload": "soon"}),
    json.dumps({"type": "event", "event": "tick", "payload": {"ts": "soon"}}),
    json.dumps({"type": "event", "event": "runboard.registry", "payload": ["phase"]}),
    json.dumps({"type": "event", "event": "runboard.registry", "payload": {"kind": 5}}),
    json.dumps({"type": "event", "event": "agent", "payload": 42}),
    json.dumps({"type": "event", "event": "tick", "seq": -4, "payload": {"ts": 1}}),
    json.dumps({"type": "req", "id": "r1", "method": "please.obey", "params": {}}),
    b"\xff\xfe binary that is not UTF-8",
]


async def test_hostile_frames_are_rejected_with_a_logged_reason_and_the_stream_goes_on() -> None:
    async def hostile(ws: ServerConnection) -> None:
        for raw in HOSTILE_FRAMES:
            await ws.send(raw)
        await ws.send(frames.encode_event("probe", {"n": 1}))
        await gw.serve_requests(ws)

    gw = ScriptedGateway(hostile)
    received: list[frames.Event] = []
    async with gw:
        client = client_for(gw, on_event=received.append)
        with capture_logs() as logs:
            await client.connect()
            await until(lambda: bool(received))
            health = await client.call("health")
        await client.close()

    rejected = [e for e in logs if e["event"] == "frame_rejected"]
    assert len(rejected) == len(HOSTILE_FRAMES)
    assert all(e["log_level"] == "warning" and e["reason"] for e in rejected)
    assert any("not JSON" in e["reason"] for e in rejected)
    assert any("unknown request id" in e["reason"] for e in rejected)
    assert any("wrong type" in e["reason"] for e in rejected)
    assert [e.event for e in received] == ["probe"]
    assert health["ok"] is True
    assert not client.closed or client.close_error is None


async def test_events_the_client_does_not_want_are_dropped_unparsed_and_the_rest_delivered() -> (
    None
):
    async def chatty(ws: ServerConnection) -> None:
        # As OpenClaw writes them (no spaces) and as Python's json does.
        await ws.send('{"type":"event","event":"agent","payload":{"delta":"hi"},"seq":1}')
        await ws.send(frames.encode_event("chat", {"state": "delta"}, seq=2))
        # Not well-formed, but unwanted: nothing acts on it, so nothing is said about it.
        await ws.send('{"type":"event","event":"agent","payload": [unterminated')
        await ws.send('{"type":"event","event":"wanted","payload":{"n":1},"seq":3}')
        # Written another way (keys reordered): parsed in full, then delivered.
        await ws.send(json.dumps({"event": "agent", "type": "event", "payload": {}}))
        await gw.serve_requests(ws)

    gw = ScriptedGateway(chatty)
    received: list[frames.Event] = []
    async with gw:
        client = client_for(gw, on_event=received.append, wants_event=lambda name: name == "wanted")
        with capture_logs() as logs:
            await client.connect()
            await until(lambda: len(received) == 2)
        await client.close()

    assert [e.event for e in received] == ["wanted", "agent"]
    assert received[0].payload == {"n": 1}
    assert client.events_ignored == 3
    assert not [e for e in logs if e["event"] == "frame_rejected"]


async def test_a_frame_over_the_size_limit_closes_the_connection_instead_of_being_parsed() -> None:
    async def huge(ws: ServerConnection) -> None:
        await ws.send("y" * 2048)
        await ws.wait_closed()

    async with ScriptedGateway(huge) as gw:
        client = client_for(gw, max_frame_bytes=1024)
        await client.connect()
        async with asyncio.timeout(3):
            error = await client.wait_closed()

    assert isinstance(error, GatewayUnavailable)


async def test_an_ok_false_answer_raises_gateway_rejected_with_the_gateways_code() -> None:
    async def refusing(ws: ServerConnection) -> None:
        request = await next_request(ws)
        error = {
            "code": "UNAVAILABLE",
            "message": "busy, try later",
            "retryable": True,
            "retryAfterMs": 1500,
            "details": {"lane": "main"},
        }
        await ws.send(frames.encode_response(request.id, error=error))
        await ws.wait_closed()

    async with ScriptedGateway(refusing) as gw:
        client = client_for(gw)
        await client.connect()
        with pytest.raises(GatewayRejected) as caught:
            await client.call("status")
        await client.close()

    assert caught.value.code == "UNAVAILABLE"
    assert caught.value.message == "busy, try later"
    assert caught.value.retryable is True
    assert caught.value.retry_after_s == 1.5
    assert caught.value.details == {"lane": "main"}


async def test_an_error_without_a_retryable_field_is_not_retryable() -> None:
    async with ScriptedGateway() as gw:
        client = client_for(gw)
        await client.connect()
        with pytest.raises(GatewayRejected) as caught:
            await client.call("no.such.method")
        await client.close()

    assert caught.value.code == "INVALID_REQUEST"
    assert caught.value.retryable is False


async def test_a_call_with_no_answer_times_out_and_the_connection_stays_usable() -> None:
    async def ignores_the_first_request(ws: ServerConnection) -> None:
        await next_request(ws)
        await gw.serve_requests(ws)

    gw = ScriptedGateway(ignores_the_first_request)
    async with gw:
        client = client_for(gw)
        await client.connect()
        with pytest.raises(GatewayTimeout) as caught:
            await client.call("status", timeout_s=0.2)
        health = await client.call("health")
        await client.close()

    assert caught.value.retryable is True
    assert health["ok"] is True


async def test_an_answer_arriving_after_its_timeout_is_dropped_quietly() -> None:
    async def answers_late(ws: ServerConnection) -> None:
        request = await next_request(ws)
        await asyncio.sleep(0.4)
        await ws.send(frames.encode_response(request.id, {"late": True}))
        await gw.serve_requests(ws)

    gw = ScriptedGateway(answers_late)
    async with gw:
        client = client_for(gw)
        await client.connect()
        with capture_logs() as logs:
            with pytest.raises(GatewayTimeout):
                await client.call("status", timeout_s=0.1)
            await until(lambda: any(e["event"] == "late_response_dropped" for e in logs))
            health = await client.call("health")
        await client.close()

    assert health["ok"] is True
    assert not [e for e in logs if e["event"] == "frame_rejected"]


async def test_a_dropped_connection_fails_every_pending_call_with_gateway_unavailable() -> None:
    async def drops_after_two_requests(ws: ServerConnection) -> None:
        await next_request(ws)
        await next_request(ws)
        ws.transport.abort()

    async with ScriptedGateway(drops_after_two_requests) as gw:
        client = client_for(gw, call_timeout_s=5.0)
        await client.connect()
        results = await asyncio.gather(
            client.call("status"), client.call("health"), return_exceptions=True
        )
        error = await client.wait_closed()

    assert all(isinstance(r, GatewayUnavailable) for r in results), results
    assert isinstance(error, GatewayUnavailable)
    assert client.closed


async def test_a_call_after_the_connection_closed_fails_at_once() -> None:
    async with ScriptedGateway() as gw:
        client = client_for(gw)
        await client.connect()
        await client.close()

        with pytest.raises(GatewayUnavailable):
            await client.call("health")

    assert client.close_error is None


async def test_a_gateway_silent_for_two_tick_intervals_is_treated_as_dead() -> None:
    async def silent(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with ScriptedGateway(silent, tick_interval_ms=100) as gw:
        client = client_for(gw)
        with capture_logs() as logs:
            await client.connect()
            async with asyncio.timeout(3):
                error = await client.wait_closed()

    assert isinstance(error, GatewayUnavailable)
    assert error.code == "TICK_TIMEOUT"
    assert any(e["event"] == "gateway_connection_stale" for e in logs)


async def test_ticks_keep_a_quiet_connection_alive() -> None:
    async def ticking(ws: ServerConnection) -> None:
        while True:
            await ws.send(frames.encode_event("tick", {"ts": now_ms()}))
            await asyncio.sleep(0.05)

    async with ScriptedGateway(ticking, tick_interval_ms=300) as gw:
        client = client_for(gw)
        ticks: list[frames.Event] = []
        client.on_event = ticks.append
        await client.connect()
        await until(lambda: len(ticks) >= 16)
        still_open = not client.closed
        await client.close()

    assert still_open
