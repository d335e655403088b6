"""Bridge commands on the channel layer are signed; the bridge refuses any other.

A real bridge against the simulated gateway listens on a real in-process
channel layer; whatever can post to the layer posts forged, tampered,
expired and replayed commands, and only the web side's signed ones run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from adminpanel.bridges import command_client, command_server
from adminpanel.bridges.command_client import group_for, signed_command
from adminpanel.bridges.command_server import SeenCommands, verify
from adminpanel.live.memory_layer import InProcessChannelLayer
from gateway_bridge.connection import Bridge
from simgateway.server import SimGateway
from tests.gateway_bridge.scripted import until
from tests.gateway_bridge.support import ListSink, quick_bridge_settings, running
from tests.support.fixtures_sim import FAST, SimGatewayFactory

KEY = "agent:main:telegram:direct:alice"
PARAMS = {"session_key": KEY, "run_id": "run-1", "reason": "stuck", "messages": []}


def message(**changes: Any) -> dict[str, Any]:
    signed = signed_command("sim", "force_clear", dict(PARAMS), "reply.1", time.time() + 5)
    return {**signed, **changes}


@pytest.mark.parametrize(
    ("forged", "reason"),
    [
        ({"signature": None}, "unsigned"),
        ({"signature": "0" * 64}, "bad signature"),
        ({"params": {**PARAMS, "run_id": "run-2"}}, "bad signature"),
        ({"command": "abort"}, "bad signature"),
        ({"reply_to": "attacker"}, "bad signature"),
        ({"deadline": time.time() + 3600}, "bad signature"),
    ],
)
def test_a_command_not_signed_as_sent_is_refused(forged: dict[str, Any], reason: str) -> None:
    assert verify("sim", message(**forged), SeenCommands()) == reason


def test_a_command_signed_for_another_gateway_is_refused() -> None:
    signed = signed_command("other", "force_clear", dict(PARAMS), "reply.1", time.time() + 5)
    assert verify("sim", signed, SeenCommands()) == "bad signature"


def test_an_expired_far_dated_or_replayed_command_is_refused() -> None:
    seen = SeenCommands()
    expired = signed_command("sim", "state", {}, "r", time.time() - 1)
    far = signed_command("sim", "state", {}, "r", time.time() + 3600)
    fresh = signed_command("sim", "state", {}, "r", time.time() + 5)

    assert verify("sim", expired, seen) == "expired"
    assert verify("sim", far, seen) == "deadline too far ahead"
    assert verify("sim", fresh, seen) == ""
    assert verify("sim", fresh, seen) == "replayed"


@pytest.fixture
async def listening(
    sim_gateway: SimGatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[SimGateway, InProcessChannelLayer, Bridge]]:
    gw = await sim_gateway(profile="2026.5.28", **FAST)
    layer = InProcessChannelLayer()
    monkeypatch.setattr(command_server, "get_channel_layer", lambda: layer)
    monkeypatch.setattr(command_client, "get_channel_layer", lambda: layer)
    sink = ListSink()
    bridge = Bridge(
        gateway="sim", url=gw.url, token="sim-token", sink=sink, **quick_bridge_settings()
    )
    stop = asyncio.Event()
    async with running(bridge):
        await until(lambda: bool(sink.snapshots()))
        serving = asyncio.create_task(command_server.serve(bridge, stop))
        await until(lambda: bool(layer.groups.get(group_for("sim"))))
        try:
            yield gw, layer, bridge
        finally:
            stop.set()
            await asyncio.wait_for(serving, 5)


async def test_a_forged_force_clear_posted_to_the_layer_is_refused_and_logged(
    listening: tuple[SimGateway, InProcessChannelLayer, Bridge],
) -> None:
    gw, layer, _ = listening
    gw.send_inbound(KEY, "please HANG")
    await until(lambda: bool(gw.registry.snapshot()["entries"]))
    run_id = gw.registry.snapshot()["entries"][0]["runId"]
    reply_to = await layer.new_channel("attacker.")
    forged = {
        "type": "bridge.command",
        "command": "force_clear",
        "reply_to": reply_to,
        "deadline": time.time() + 5,
        "params": {"session_key": KEY, "run_id": run_id, "reason": "x", "messages": []},
    }

    with capture_logs() as logs:
        await layer.group_send(group_for("sim"), forged)
        answer = await asyncio.wait_for(layer.receive(reply_to), 5)

    assert (answer["ok"], answer["error_code"]) == (False, "REFUSED")
    refused = [e for e in logs if e["event"] == "bridge_command_refused"]
    assert refused and refused[0]["reason"] == "unsigned" and refused[0]["gateway"] == "sim"
    assert gw.registry.snapshot()["entries"][0]["runId"] == run_id  # still held


async def test_a_signed_command_runs_and_is_logged_with_its_intent_and_request_id(
    listening: tuple[SimGateway, InProcessChannelLayer, Bridge],
) -> None:
    gw, _, _ = listening
    gw.send_inbound(KEY, "please HANG")
    await until(lambda: bool(gw.registry.snapshot()["entries"]))
    run_id = gw.registry.snapshot()["entries"][0]["runId"]
    params = {
        "session_key": KEY,
        "run_id": run_id,
        "reason": "stuck",
        "messages": [],
        "intent": 41,
        "request_id": "req-7",
    }

    with capture_logs() as logs:
        answer = await command_client.call_bridge("sim", "force_clear", params, timeout_s=5)

    assert answer.ok, answer
    [received] = [e for e in logs if e["event"] == "bridge_command_received"]
    assert (received["command"], received["intent"], received["request_id"]) == (
        "force_clear",
        41,
        "req-7",
    )
    await until(lambda: not gw.registry.snapshot()["entries"])
