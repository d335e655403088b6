"""The simulated gateway over a real loopback socket, with a raw websockets client."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.simgateway.raw_client import WAIT_S, RawClient, connect_params
from tests.support.fixtures_sim import SimGatewayFactory

KEY = "agent:main:telegram:direct:42"


async def closed_code(ws: object) -> int | None:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), WAIT_S)  # type: ignore[attr-defined]
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


async def test_the_handshake_answers_hello_ok_with_boot_id_methods_and_tick(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(tick_interval_s=0.2)
    client, hello = await RawClient.open(gw.url)
    payload = hello["payload"]
    assert hello["ok"] and payload["type"] == "hello-ok"
    assert payload["protocol"] == 4
    assert payload["server"]["bootId"] == gw.registry.boot_id
    assert payload["server"]["version"] == "2026.9.6"
    assert {"runboard.registry.subscribe", "runboard.registry.forceClear", "chat.send"} <= set(
        payload["features"]["methods"]
    )
    assert payload["policy"]["tickIntervalMs"] == 200
    assert (await client.recv())["event"] == "tick"
    await client.close()


async def test_a_wrong_token_gets_auth_token_mismatch_then_a_close(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway()
    ws = await connect(gw.url)
    await ws.recv()
    await ws.send(
        json.dumps(
            {"type": "req", "id": "1", "method": "connect", "params": connect_params("wrong")}
        )
    )
    response = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
    assert (response["ok"], response["error"]["code"]) == (False, "AUTH_TOKEN_MISMATCH")
    assert await closed_code(ws) == 1008


async def test_a_first_frame_that_is_not_connect_is_closed_with_1008(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway()
    ws = await connect(gw.url)
    await ws.recv()
    await ws.send(json.dumps({"type": "req", "id": "1", "method": "health", "params": {}}))
    assert await closed_code(ws) == 1008


async def test_a_gateway_still_starting_closes_new_sockets_with_1013(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(start_delay_s=30.0)
    ws = await connect(gw.url)
    assert await closed_code(ws) == 1013


async def test_bad_params_are_invalid_request_naming_the_field(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway()
    client, _ = await RawClient.open(gw.url)
    response = await client.request("chat.send", {"sessionKey": KEY, "message": "hi"})
    assert response["error"]["code"] == "INVALID_REQUEST"
    assert "idempotencyKey" in response["error"]["message"]
    response = await client.request(
        "runboard.registry.forceClear", {"sessionKey": KEY, "expectRunId": 7, "reason": "x"}
    )
    assert "expectRunId" in response["error"]["message"]
    response = await client.request(
        "runboard.registry.requeue", {"sessionKey": KEY, "messages": []}
    )
    assert "messages" in response["error"]["message"]
    await client.close()


async def test_an_unknown_method_is_invalid_request(sim_gateway: SimGatewayFactory) -> None:
    gw = await sim_gateway()
    client, _ = await RawClient.open(gw.url)
    response = await client.request("no.such.method")
    assert response["error"]["code"] == "INVALID_REQUEST"
    assert "unknown method" in response["error"]["message"]
    await client.close()


async def test_without_the_plugin_hello_lists_no_registry_methods_and_they_are_unknown(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(plugin=False)
    client, hello = await RawClient.open(gw.url)
    features = hello["payload"]["features"]
    assert {"sessions.list", "chat.send", "chat.abort", "logs.tail"} <= set(features["methods"])
    assert not [m for m in features["methods"] if m.startswith("runboard.registry")]
    assert "runboard.registry" not in features["events"]
    for method, params in (
        ("runboard.registry.snapshot", {}),
        ("runboard.registry.subscribe", {}),
        ("runboard.registry.forceClear", {"sessionKey": KEY, "expectRunId": "r", "reason": "x"}),
        ("runboard.registry.requeue", {"sessionKey": KEY, "messages": []}),
    ):
        error = (await client.request(method, params))["error"]
        assert (error["code"], error["message"]) == ("INVALID_REQUEST", f"unknown method: {method}")
    assert (
        await client.payload(
            "chat.send", {"sessionKey": KEY, "message": "hi", "idempotencyKey": "k1"}
        )
    )["status"] == "started"
    await client.close()


async def test_malformed_frames_are_ignored_and_the_connection_stays_up(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway()
    client, _ = await RawClient.open(gw.url)
    for junk in ("{nope", "[1,2]", '{"type":"req","id":"","method":"health"}', '{"type":"x"}'):
        await client.ws.send(junk)
    assert (await client.payload("health"))["ok"] is True
    await client.close()


async def test_a_missing_scope_is_forbidden(sim_gateway: SimGatewayFactory) -> None:
    gw = await sim_gateway()
    client, _ = await RawClient.open(gw.url, scopes=["operator.read"])
    response = await client.request(
        "runboard.registry.forceClear", {"sessionKey": KEY, "expectRunId": "r", "reason": "x"}
    )
    assert response["error"]["code"] == "FORBIDDEN"
    assert response["error"]["details"]["missingScope"] == "operator.admin"
    await client.close()


async def test_subscribe_delivers_every_change_in_seq_order_from_the_snapshot_on(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(turn_median_s=0.05, turn_cap_s=0.1)
    gw.send_inbound(KEY, "before subscribing")
    await asyncio.sleep(0.3)
    client, _ = await RawClient.open(gw.url)
    subscribed = await client.payload("runboard.registry.subscribe")
    snapshot = await client.payload("runboard.registry.snapshot")
    assert subscribed["bootId"] == snapshot["bootId"] == gw.registry.boot_id
    for i in range(3):
        gw.send_inbound(f"agent:main:telegram:direct:{i}", "hello")
    seen = await client.registry_events_until(
        lambda p: p["kind"] == "released" and p["sessionKey"].endswith(":2")
    )
    seqs = [p["seq"] for p in seen]
    assert seqs == list(range(subscribed["seq"] + 1, subscribed["seq"] + 1 + len(seqs)))
    assert snapshot["seq"] >= subscribed["seq"]
    await client.close()


async def test_chat_send_with_a_repeated_idempotency_key_does_not_run_twice(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway()
    client, _ = await RawClient.open(gw.url)
    params = {"sessionKey": KEY, "message": "HANG", "idempotencyKey": "same-key"}
    assert await client.payload("chat.send", params) == {"runId": "same-key", "status": "started"}
    assert await client.payload("chat.send", params) == {"runId": "same-key", "status": "in_flight"}
    snapshot = await client.payload("runboard.registry.snapshot")
    assert [e["runId"] for e in snapshot["entries"]] == ["same-key"]
    assert snapshot["entries"][0]["waiters"] == []
    await client.close()


async def test_chat_history_lacks_a_message_lost_to_the_drain_race_on_2026_5_3(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.5.3", turn_median_s=0.05, turn_cap_s=0.1)
    client, _ = await RawClient.open(gw.url)
    await client.payload("runboard.registry.subscribe")
    first = {"sessionKey": KEY, "message": "first", "idempotencyKey": str(uuid.uuid4())}
    await client.payload("chat.send", first)
    await client.registry_events_until(lambda p: p["kind"] == "released")
    lost = {"sessionKey": KEY, "message": "second", "idempotencyKey": str(uuid.uuid4())}
    await client.payload("chat.send", lost)
    await client.registry_events_until(lambda p: p["kind"] == "drain.failed")
    history = await client.payload("chat.history", {"sessionKey": KEY})
    user_messages = [m["content"] for m in history["messages"] if m["role"] == "user"]
    assert user_messages == ["first"]
    logs = await client.payload("logs.tail", {"limit": 50})
    assert any("followup queue drain failed for" in line for line in logs["lines"])
    await client.close()


async def test_force_clear_over_the_wire_is_compare_and_clear(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.5.28")
    client, _ = await RawClient.open(gw.url)
    owner = gw.send_inbound(KEY, "HANG")
    stale = await client.payload(
        "runboard.registry.forceClear", {"sessionKey": KEY, "expectRunId": "old", "reason": "x"}
    )
    assert (stale["cleared"], stale["reason"], stale["current"]["runId"]) == (
        False, "owner_changed", owner,
    )  # fmt: skip
    cleared = await client.payload(
        "runboard.registry.forceClear", {"sessionKey": KEY, "expectRunId": owner, "reason": "x"}
    )
    assert (cleared["cleared"], cleared["runId"]) == (True, owner)
    await client.close()


async def test_stop_sends_stopping_and_shutdown_before_closing(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway()
    client, _ = await RawClient.open(gw.url)
    await client.payload("runboard.registry.subscribe")
    await gw.stop(restart_expected_ms=1500)
    frames = []
    with pytest.raises(ConnectionClosed):
        while True:
            frames.append(await client.recv())
    assert frames[0]["payload"]["kind"] == "stopping"
    assert frames[1]["event"] == "shutdown"
    assert frames[1]["payload"]["restartExpectedMs"] == 1500


async def test_a_gateway_restarted_on_the_same_port_has_a_new_boot_and_seq_1(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway()
    client, _ = await RawClient.open(gw.url)
    await gw.kill()
    with pytest.raises(ConnectionClosed):
        while True:
            await client.recv()
    again = await sim_gateway(port=gw.port)
    client, hello = await RawClient.open(again.url)
    assert hello["payload"]["server"]["bootId"] not in ("", gw.registry.boot_id)
    assert (await client.payload("runboard.registry.subscribe"))["seq"] == 1
    await client.close()


async def test_fault_knobs_duplicate_reorder_and_slip_in_garbage_without_losing_a_change(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(
        duplicate_rate=0.3, reorder_window=4, garbage_rate=0.3, turn_median_s=0.05, turn_cap_s=0.1
    )
    ws = await connect(gw.url)
    client = RawClient(ws)
    await client.recv()
    await client.request("connect", connect_params("sim-token"))
    start = (await client.payload("runboard.registry.subscribe"))["seq"]
    for i in range(5):
        gw.send_inbound(f"agent:main:telegram:direct:{i}", "hello")
    registry: list[dict[str, object]] = []
    garbage = 0
    while not _all_released_without_gaps(registry, start, sessions=5):
        kind, payload = _classify(await asyncio.wait_for(ws.recv(), WAIT_S))
        if kind == "garbage":
            garbage += 1
        elif kind == "registry":
            registry.append(payload)
    registry_seqs = [int(p["seq"]) for p in registry]  # type: ignore[call-overload]
    assert garbage > 0
    assert len(registry_seqs) > len(set(registry_seqs))  # some came twice
    assert registry_seqs != sorted(registry_seqs)  # some came out of order
    await ws.close()


def _classify(raw: str | bytes) -> tuple[str, dict[str, object]]:
    """'registry' (a well-formed registry change), 'other' (another valid frame) or 'garbage'."""
    try:
        frame = json.loads(raw)
    except ValueError:
        return "garbage", {}
    if not isinstance(frame, dict) or frame.get("type") not in ("event", "res", "req"):
        return "garbage", {}
    payload = frame.get("payload")
    if frame.get("type") == "res" and not isinstance(frame.get("ok"), bool):
        return "garbage", {}
    if frame.get("type") == "event" and not isinstance(frame.get("event"), str):
        return "garbage", {}
    if frame.get("event") in ("chat", "agent") and not isinstance(payload, dict):
        return "garbage", {}
    if frame.get("event") != "runboard.registry":
        return "other", {}
    if not isinstance(payload, dict) or not isinstance(payload.get("seq"), int):
        return "garbage", {}
    return "registry", payload


def _all_released_without_gaps(
    registry: list[dict[str, object]], start: int, *, sessions: int
) -> bool:
    released = {p["sessionKey"] for p in registry if p["kind"] == "released"}
    seqs = {int(p["seq"]) for p in registry}  # type: ignore[call-overload]
    return len(released) == sessions and seqs == set(range(start + 1, max(seqs) + 1))


async def test_distinct_registry_ids_give_operations_their_own_ids_and_boot(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(distinct_registry_ids=True, registry_reports_store=False)
    client, hello = await RawClient.open(gw.url)
    boot = hello["payload"]["server"]["bootId"]
    subscribed = await client.payload("runboard.registry.subscribe")
    assert boot and subscribed["bootId"] != boot
    run_id = gw.send_inbound(KEY, "HANG")
    events = await client.registry_events_until(lambda p: p["kind"] == "acquired")
    (acquired,) = [p for p in events if p["kind"] == "acquired"]
    op_id = acquired["runId"]
    assert op_id != run_id and op_id.startswith(f"op-{subscribed['bootId'][:8]}-")
    snapshot = await client.payload("runboard.registry.snapshot")
    assert [e["runId"] for e in snapshot["entries"]] == [op_id]
    assert snapshot["sessions"] == {}
    rows = (await client.payload("sessions.list"))["sessions"]
    assert rows[0]["activeRunIds"] == [run_id]
    stale = await client.payload(
        "runboard.registry.forceClear", {"sessionKey": KEY, "expectRunId": run_id, "reason": "x"}
    )
    assert (stale["cleared"], stale["reason"]) == (False, "owner_changed")
    cleared = await client.payload(
        "runboard.registry.forceClear", {"sessionKey": KEY, "expectRunId": op_id, "reason": "x"}
    )
    assert (cleared["cleared"], cleared["runId"], cleared["phase"]) == (True, op_id, "aborted")
    await client.close()


async def test_a_registry_without_the_store_sends_no_session_status(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(registry_reports_store=False, turn_median_s=0.01, turn_cap_s=0.02)
    client, _ = await RawClient.open(gw.url)
    await client.payload("runboard.registry.subscribe")
    gw.send_inbound(KEY, "hello")
    events = await client.registry_events_until(lambda p: p["kind"] == "released")
    assert "session.status" not in {p["kind"] for p in events}
    await client.close()


async def test_hello_on_2026_5_28_has_no_boot_id_when_registry_ids_are_distinct(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.5.28", distinct_registry_ids=True)
    client, hello = await RawClient.open(gw.url)
    assert "bootId" not in hello["payload"]["server"]
    await client.close()


@pytest.mark.parametrize("profile", ["2026.9", "2026.5.28"])
async def test_sessions_list_leaves_waiting_messages_out_of_active_run_ids(
    sim_gateway: SimGatewayFactory, profile: str
) -> None:
    gw = await sim_gateway(profile=profile, plugin=False)
    client, _ = await RawClient.open(gw.url)
    owner = gw.send_inbound(KEY, "HANG")
    gw.send_inbound(KEY, "waiting behind it")
    (row,) = (await client.payload("sessions.list"))["sessions"]
    assert (row["hasActiveRun"], row["activeRunIds"]) == (True, [owner])
    await client.close()
    shown = await sim_gateway(profile=profile, plugin=False, waiters_in_active_run_ids=True)
    client, _ = await RawClient.open(shown.url)
    owner = shown.send_inbound(KEY, "HANG")
    waiting = shown.send_inbound(KEY, "waiting behind it")
    (row,) = (await client.payload("sessions.list"))["sessions"]
    assert sorted(row["activeRunIds"]) == sorted([owner, waiting])
    await client.close()
