"""The channel hub: a bridge process's layer reaching the web process's layer over a real socket."""

from __future__ import annotations

import asyncio
import json
import struct
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from adminpanel.bridges import command_client, command_server
from adminpanel.live import hub as channel_hub
from adminpanel.live.hub import ChannelHub, HubChannelLayer, HubUnavailable, encode
from adminpanel.live.layers import group_has_members
from adminpanel.live.memory_layer import InProcessChannelLayer

PUSH = {"type": "sessions.changed", "html": "<tr id='s-1'>é</tr>", "rows": 1}


@dataclass
class Pair:
    web: InProcessChannelLayer  # the web process's layer, served by the hub
    hub: ChannelHub
    bridge: HubChannelLayer  # the bridge process's layer


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    web = InProcessChannelLayer()
    hub = ChannelHub(web)
    await hub.start()
    bridge = HubChannelLayer(path=hub.path)
    try:
        yield Pair(web, hub, bridge)
    finally:
        await bridge.close()
        await hub.close()


async def until(check: Callable[[], object], within_s: float = 5.0) -> None:
    """Poll ``check``: the hub's side changes on another connection's frames."""
    async with asyncio.timeout(within_s):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_a_group_send_from_the_bridge_reaches_every_viewer_once_in_order(pair: Pair) -> None:
    viewers = [await pair.web.new_channel() for _ in range(3)]
    for viewer in viewers:
        await pair.web.group_add("sessions", viewer)
    for n in range(5):
        await pair.bridge.group_send("sessions", {**PUSH, "rows": n})
    for viewer in viewers:
        got = [await asyncio.wait_for(pair.web.receive(viewer), 5) for _ in range(5)]
        assert [m["rows"] for m in got] == [0, 1, 2, 3, 4]
        assert got[0]["html"] == PUSH["html"]
        assert viewer not in pair.web.channels  # nothing more waits there


async def test_a_command_and_its_answer_cross_both_ways(pair: Pair) -> None:
    # As command_server and command_client: the inbox joins a group, the web sends with a
    # reply channel.
    inbox = await pair.bridge.new_channel("runboard-bridge-inbox.")
    await pair.bridge.group_add("runboard-bridge.sim", inbox)
    listening = asyncio.ensure_future(pair.bridge.receive(inbox))
    reply_to = await pair.web.new_channel("runboard-reply.")
    await until(lambda: pair.web.groups.get("runboard-bridge.sim"))
    command = {"type": "bridge.command", "command": "state", "reply_to": reply_to}
    await pair.web.group_send("runboard-bridge.sim", command)
    assert await asyncio.wait_for(listening, 5) == command
    await pair.bridge.send(reply_to, {"type": "bridge.answer", "ok": True, "result": {"n": 1}})
    answer = await asyncio.wait_for(pair.web.receive(reply_to), 5)
    assert answer == {"type": "bridge.answer", "ok": True, "result": {"n": 1}}


async def test_a_bridge_command_goes_through_the_hub_even_right_after_the_host_booted(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The monotonic clock counts from boot: a listener must not wait for it to pass
    # REJOIN_EVERY_S before joining its group for the first time.
    booted = SimpleNamespace(monotonic=lambda: 5.0, time=time.time)
    monkeypatch.setattr(command_server, "time", booted)
    monkeypatch.setattr(command_server, "get_channel_layer", lambda: pair.bridge)
    bridge = SimpleNamespace(
        gateway="sim", state=SimpleNamespace(status="connected", mode="plugin")
    )
    stop = asyncio.Event()
    listening = asyncio.create_task(command_server.serve(bridge, stop))  # type: ignore[arg-type]
    try:
        await until(lambda: pair.web.groups.get(command_client.group_for("sim")))
        monkeypatch.setattr(command_client, "get_channel_layer", lambda: pair.web)
        answer = await command_client.call_bridge("sim", "state", {}, timeout_s=5)
        assert answer.ok and answer.result == {"status": "connected", "mode": "plugin"}
    finally:
        stop.set()
        await asyncio.wait_for(listening, 5)


async def test_a_message_sent_before_the_receive_waits_and_a_cancelled_receive_loses_none(
    pair: Pair,
) -> None:
    channel = await pair.bridge.new_channel()
    await pair.web.send(channel, {"type": "t", "n": 1})
    assert await asyncio.wait_for(pair.bridge.receive(channel), 5) == {"type": "t", "n": 1}
    # A receive cancelled by its timeout, as the command listener's every second.
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await pair.bridge.receive(channel)
    await pair.web.send(channel, {"type": "t", "n": 2})
    assert await asyncio.wait_for(pair.bridge.receive(channel), 5) == {"type": "t", "n": 2}


async def test_the_bridge_process_leaving_takes_its_group_memberships_along(pair: Pair) -> None:
    inbox = await pair.bridge.new_channel()
    await pair.bridge.group_add("runboard-bridge.sim", inbox)
    await until(lambda: pair.web.groups.get("runboard-bridge.sim"))
    await pair.bridge.close()
    await until(lambda: not pair.web.groups.get("runboard-bridge.sim"))
    await until(lambda: not pair.hub._peers)


async def members_become(layer: HubChannelLayer, group: str, want: bool) -> None:
    """Poll the layer's answer until it is ``want``: it changes on the hub's frames."""
    async with asyncio.timeout(5.0):
        while await layer.group_has_members(group) != want:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_the_bridge_knows_whether_anybody_watches(pair: Pair) -> None:
    # not known yet: render as if somebody did
    assert await pair.bridge.group_has_members("sessions")
    await pair.bridge.group_send("sessions", PUSH)  # connects; the watch goes with it
    await members_become(pair.bridge, "sessions", False)
    assert not await group_has_members(pair.bridge, "sessions")  # what the broadcaster asks
    viewer = await pair.web.new_channel()
    await pair.web.group_add("sessions", viewer)
    await members_become(pair.bridge, "sessions", True)
    await pair.web.group_discard("sessions", viewer)
    await members_become(pair.bridge, "sessions", False)


async def test_after_a_dropped_connection_the_layer_reconnects_and_replays_what_it_joined(
    pair: Pair,
) -> None:
    inbox = await pair.bridge.new_channel()
    await pair.bridge.group_add("runboard-bridge.sim", inbox)
    listening = asyncio.ensure_future(pair.bridge.receive(inbox))
    await until(lambda: pair.hub._peers and inbox in next(iter(pair.hub._peers)).forwarders)
    first = next(iter(pair.hub._peers))
    first.writer.close()  # the hub's end goes away; the peer's memberships with it
    await until(lambda: pair.hub._peers and next(iter(pair.hub._peers)) is not first)
    await until(lambda: inbox in next(iter(pair.hub._peers)).forwarders)
    await until(lambda: inbox in pair.web.groups.get("runboard-bridge.sim", {}))
    await pair.web.group_send("runboard-bridge.sim", {"type": "t", "n": 3})
    assert await asyncio.wait_for(listening, 5) == {"type": "t", "n": 3}


async def test_a_reply_channel_nobody_receives_on_is_dropped_at_the_hub(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(channel_hub, "IDLE_UNSUBSCRIBE_S", 0.05)
    reply = await pair.bridge.new_channel("runboard-reply.")
    await pair.web.send(reply, {"type": "bridge.answer", "ok": True})
    await asyncio.wait_for(pair.bridge.receive(reply), 5)
    peer = next(iter(pair.hub._peers))
    assert reply in peer.forwarders
    await until(lambda: reply not in peer.forwarders)


async def test_sends_fail_loudly_when_no_hub_listens(tmp_path: object) -> None:
    layer = HubChannelLayer(path="/nonexistent/runboard-hub.sock")
    with pytest.raises(HubUnavailable, match="unreachable"):
        await layer.group_send("sessions", PUSH)


def test_a_layer_without_a_path_is_refused() -> None:
    with pytest.raises(ValueError, match="RUNBOARD_CHANNEL_HUB"):
        HubChannelLayer()


# Bad frames at the hub's boundary


async def raw(pair: Pair) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(pair.hub.path)


async def answer(reader: asyncio.StreamReader) -> dict[str, object]:
    frame = await asyncio.wait_for(channel_hub.read_frame(reader), 5)
    assert frame is not None
    return frame


async def test_a_bad_frame_is_refused_with_its_reason_and_the_frames_after_it_still_work(
    pair: Pair,
) -> None:
    reader, writer = await raw(pair)
    viewer = await pair.web.new_channel()
    await pair.web.group_add("sessions", viewer)
    writer.write(encode({"op": "explode"}))
    writer.write(encode({"op": "group_send", "group": "sessions", "message": "not an object"}))
    writer.write(encode({"op": "group_add", "group": "bad group!", "channel": "c"}))
    writer.write(encode({"op": "group_send", "group": "sessions", "message": PUSH}))
    assert "unknown op 'explode'" in str((await answer(reader))["error"])
    assert "'message' must be an object" in str((await answer(reader))["error"])
    assert "Group name must be" in str((await answer(reader))["error"])
    assert await asyncio.wait_for(pair.web.receive(viewer), 5) == PUSH
    writer.close()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (struct.pack(">I", 5) + b"nope!", "frame is not JSON"),
        (struct.pack(">I", 2) + b"[]", "a JSON list, not an object"),
        (struct.pack(">I", channel_hub.MAX_FRAME_BYTES + 1), "is over"),
    ],
)
async def test_a_stream_out_of_step_is_told_why_and_dropped(
    pair: Pair, data: bytes, reason: str
) -> None:
    reader, writer = await raw(pair)
    writer.write(data)
    assert reason in str((await answer(reader))["error"])
    assert await asyncio.wait_for(channel_hub.read_frame(reader), 5) is None  # closed
    writer.close()
    # The hub itself goes on serving.
    await pair.bridge.group_send("sessions", PUSH)


def test_frames_are_length_and_json() -> None:
    frame = encode({"op": "send", "channel": "c", "message": {"html": "é"}})
    (size,) = struct.unpack(">I", frame[:4])
    assert size == len(frame) - 4
    assert json.loads(frame[4:]) == {"op": "send", "channel": "c", "message": {"html": "é"}}
