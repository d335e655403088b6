"""One channel layer for the web server and its bridge process, without Redis.

``manage.py demo`` runs the bridges (ingest, the broadcaster's renders,
recovery) in a child process, ``manage.py runbridge``, so that ingest's
SQLite work does not share a GIL with the event loop that serves the
viewers' sockets. The viewers' consumers live in the web process, in its
in-memory layer (``memory_layer.py``). That layer is the hub: the web
process serves it on a Unix socket in a private directory, and the child's
``HubChannelLayer`` forwards its calls there. Redis does the same job for a
deployment (``RUNBOARD_REDIS_URL``); the demo's embedded defaults have none.

The wire: frames of a 4-byte big-endian length and a JSON object.

Layer to hub (none is answered; a refused frame gets an ``error`` frame back):

- ``{"op": "send", "channel": c, "message": m}``
- ``{"op": "group_send", "group": g, "message": m}``
- ``{"op": "group_add" | "group_discard", "group": g, "channel": c}``
- ``{"op": "subscribe" | "unsubscribe", "channel": c}``: forward, or stop
  forwarding, what arrives on the hub's channel ``c``
- ``{"op": "watch", "group": g}``: say whether ``g`` has members, and again
  whenever that changes

Hub to layer:

- ``{"op": "message", "channel": c, "message": m}``
- ``{"op": "members", "group": g, "count": n}``
- ``{"op": "error", "error": "..."}``

Frames on one connection are handled in order, so a group send follows the
group add before it. A message is forwarded once, to the connection that
subscribed its channel; when that connection closes, its group memberships go
with it. Messages are JSON: strings, numbers, booleans, lists and objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import struct
import tempfile
import time
from collections import Counter
from typing import Any

import structlog
from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer

from adminpanel.live.memory_layer import InProcessChannelLayer

log = structlog.get_logger(__name__)

_HEADER = struct.Struct(">I")
# A flush is at most a few hundred rows of HTML; anything near this is not ours.
MAX_FRAME_BYTES = 16 * 1024 * 1024
# A subscription no receive has used for this long is dropped (reply channels).
IDLE_UNSUBSCRIBE_S = 30.0
RECONNECT_MAX_S = 5.0


class HubProtocolError(ValueError):
    """A frame that is not what the hub's wire allows; the message says what was wrong."""


def encode(frame: dict[str, Any]) -> bytes:
    body = json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > MAX_FRAME_BYTES:
        raise HubProtocolError(f"frame of {len(body)} bytes is over {MAX_FRAME_BYTES}")
    return _HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next frame, or None at a clean end of stream."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise HubProtocolError("stream ended inside a frame header") from exc
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise HubProtocolError(f"frame of {size} bytes is over {MAX_FRAME_BYTES}")
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise HubProtocolError(f"stream ended inside a {size}-byte frame") from exc
    try:
        frame = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HubProtocolError(f"frame is not JSON: {exc}") from exc
    if not isinstance(frame, dict):
        raise HubProtocolError(f"frame is a JSON {type(frame).__name__}, not an object")
    return frame


def _text(frame: dict[str, Any], key: str) -> str:
    value = frame.get(key)
    if not isinstance(value, str):
        raise HubProtocolError(f"{frame.get('op')}: {key!r} must be a string, got {value!r:.80}")
    return value


def _message(frame: dict[str, Any]) -> dict[str, Any]:
    value = frame.get("message")
    if not isinstance(value, dict):
        raise HubProtocolError(f"{frame.get('op')}: 'message' must be an object")
    if "__asgi_channel__" in value:
        raise HubProtocolError(f"{frame.get('op')}: 'message' may not carry __asgi_channel__")
    return value


# The hub: the web process's side ---------------------------------------------------


class _Peer:
    """One connected layer: its subscriptions, group memberships and watched groups."""

    def __init__(self, layer: InProcessChannelLayer, writer: asyncio.StreamWriter) -> None:
        self.layer = layer
        self.writer = writer
        self.forwarders: dict[str, asyncio.Task[None]] = {}
        self.memberships: set[tuple[str, str]] = set()
        self.watched: dict[str, int] = {}

    def write(self, frame: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode(frame))

    async def handle(self, frame: dict[str, Any]) -> None:
        op = frame.get("op")
        layer = self.layer
        if op == "group_send":
            await layer.group_send(_text(frame, "group"), _message(frame))
        elif op == "send":
            channel = _text(frame, "channel")
            try:
                await layer.send(channel, _message(frame))
            except ChannelFull:
                log.warning("channel_hub_channel_full", channel=channel)
        elif op in ("group_add", "group_discard"):
            group, channel = _text(frame, "group"), _text(frame, "channel")
            if op == "group_add":
                await layer.group_add(group, channel)
                self.memberships.add((group, channel))
            else:
                await layer.group_discard(group, channel)
                self.memberships.discard((group, channel))
        elif op == "subscribe":
            channel = _text(frame, "channel")
            layer.require_valid_channel_name(channel)
            if channel not in self.forwarders:
                self.forwarders[channel] = asyncio.create_task(
                    self._forward(channel), name=f"channel-hub:{channel}"
                )
        elif op == "unsubscribe":
            if task := self.forwarders.pop(_text(frame, "channel"), None):
                task.cancel()
        elif op == "watch":
            group = _text(frame, "group")
            layer.require_valid_group_name(group)
            self.watched[group] = -1
            self.members_changed(group)
        else:
            raise HubProtocolError(f"unknown op {op!r}")

    async def _forward(self, channel: str) -> None:
        # Cancelled only while waiting: a message taken off the queue is written at once.
        while True:
            message = await self.layer.receive(channel)
            self.write({"op": "message", "channel": channel, "message": message})

    def members_changed(self, group: str) -> None:
        if group not in self.watched:
            return
        count = len(self.layer.groups.get(group, ()))
        if (count > 0) != (self.watched[group] > 0) or self.watched[group] < 0:
            self.watched[group] = count
            self.write({"op": "members", "group": group, "count": count})

    async def close(self) -> None:
        for task in self.forwarders.values():
            task.cancel()
        await asyncio.gather(*self.forwarders.values(), return_exceptions=True)
        self.forwarders.clear()
        for group, channel in self.memberships:
            await self.layer.group_discard(group, channel)
        self.memberships.clear()
        self.writer.close()


class ChannelHub:
    """Serves this process's in-memory layer on a Unix socket to other processes' layers.

    The socket lives in a directory of its own (mode 0700) made by ``start``
    and removed by ``close``; ``path`` is what ``RUNBOARD_CHANNEL_HUB`` names.
    """

    def __init__(self, layer: InProcessChannelLayer) -> None:
        self.layer = layer
        self._dir = ""
        self.path = ""
        self._server: asyncio.Server | None = None
        self._peers: set[_Peer] = set()

    async def start(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="runboard-hub-")
        self.path = os.path.join(self._dir, "hub.sock")
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)
        self.layer.member_listeners.add(self._members_changed)
        log.info("channel_hub_listening", path=self.path)

    def _members_changed(self, group: str) -> None:
        for peer in self._peers:
            peer.members_changed(group)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _Peer(self.layer, writer)
        self._peers.add(peer)
        log.info("channel_hub_peer_connected", peers=len(self._peers))
        try:
            while True:
                try:
                    frame = await read_frame(reader)
                except HubProtocolError as exc:
                    # The stream is out of step: say why and drop the connection.
                    log.warning("channel_hub_frame_refused", error=str(exc))
                    peer.write({"op": "error", "error": str(exc)})
                    break
                if frame is None:
                    break
                try:
                    await peer.handle(frame)
                except (HubProtocolError, TypeError, AssertionError) as exc:
                    # One bad frame: refuse it, keep the connection and the frames after it.
                    message = f"{frame.get('op')!r} refused: {exc}"
                    log.warning("channel_hub_frame_refused", error=message)
                    peer.write({"op": "error", "error": message})
        except ConnectionError:
            pass
        finally:
            self._peers.discard(peer)
            await peer.close()
            log.info("channel_hub_peer_left", peers=len(self._peers))

    async def close(self) -> None:
        self.layer.member_listeners.discard(self._members_changed)
        if self._server is not None:
            self._server.close()
            for peer in list(self._peers):
                await peer.close()
            await self._server.wait_closed()
            self._server = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = self.path = ""


# The layer: the bridge process's side ----------------------------------------------


class HubUnavailable(ConnectionError):
    """The hub's socket cannot be reached (the web process is not running)."""


class HubChannelLayer(BaseChannelLayer):
    """A channel layer whose channels and groups are another process's (``ChannelHub``).

    Sends go to the hub; ``receive`` subscribes the channel at the hub and
    waits on a local queue the hub's forwards fill. Group memberships,
    subscriptions and watches are replayed after a reconnect.
    """

    extensions = ["groups", "flush"]

    def __init__(
        self,
        path: str = "",
        expiry: int = 60,
        group_expiry: int = 86400,
        capacity: int = 100,
        channel_capacity: dict[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(expiry=expiry, capacity=capacity, channel_capacity=channel_capacity)
        if not path:
            raise ValueError("HubChannelLayer needs the hub's socket path (RUNBOARD_CHANNEL_HUB)")
        self.path = path
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._connecting: asyncio.Lock | None = None
        self._queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._waiting: Counter[str] = Counter()
        self._used_at: dict[str, float] = {}
        self._subscribed: set[str] = set()
        self._memberships: set[tuple[str, str]] = set()
        self._members: dict[str, int | None] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self._reconnecting: asyncio.Task[None] | None = None

    # Connection

    def _bind_loop(self) -> None:
        """Streams belong to one event loop: a new loop (a test's) starts afresh."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._writer = self._reader_task = None
            self._connecting = asyncio.Lock()
            self._queues.clear()
            self._waiting.clear()
            self._subscribed.clear()

    async def _connection(self) -> asyncio.StreamWriter:
        self._bind_loop()
        if self._writer is not None and not self._writer.is_closing():
            return self._writer
        assert self._connecting is not None
        async with self._connecting:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            try:
                reader, writer = await asyncio.open_unix_connection(self.path)
            except OSError as exc:
                raise HubUnavailable(f"channel hub at {self.path} unreachable: {exc}") from exc
            # Replay what the hub forgot when the last connection closed.
            for group, channel in sorted(self._memberships):
                writer.write(encode({"op": "group_add", "group": group, "channel": channel}))
            for channel in sorted(self._subscribed):
                writer.write(encode({"op": "subscribe", "channel": channel}))
            for group in sorted(self._members):
                writer.write(encode({"op": "watch", "group": group}))
            self._writer = writer
            self._reader_task = asyncio.create_task(self._read(reader, writer), name="channel-hub")
            return writer

    async def _write(self, frame: dict[str, Any]) -> None:
        data = encode(frame)
        writer = await self._connection()
        writer.write(data)
        await writer.drain()

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ended = True  # by the hub (end of stream, an error), not by our cancelling
        try:
            while (frame := await read_frame(reader)) is not None:
                op = frame.get("op")
                if op == "message":
                    channel, message = _text(frame, "channel"), _message(frame)
                    self._queues.setdefault(channel, asyncio.Queue()).put_nowait(message)
                elif op == "members":
                    count = frame.get("count")
                    self._members[_text(frame, "group")] = count if isinstance(count, int) else None
                elif op == "error":
                    log.warning("channel_hub_refused", error=frame.get("error"))
        except (HubProtocolError, ConnectionError) as exc:
            log.warning("channel_hub_stream_failed", error=str(exc))
        except asyncio.CancelledError:
            ended = False
            raise
        finally:
            writer.close()
            if self._writer is writer and ended:
                self._writer = None
                # Unknown until the hub says again: render as if somebody watched.
                self._members = dict.fromkeys(self._members)
                if self._subscribed or self._memberships:
                    self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        """Receivers wait on local queues: bring their subscriptions back."""
        delay = 0.1
        while self._writer is None and (self._subscribed or self._memberships):
            try:
                await self._connection()
                log.info("channel_hub_reconnected", path=self.path)
                return
            except HubUnavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)

    # Channel layer API

    async def new_channel(self, prefix: str = "specific.") -> str:
        name = f"{prefix}hub{os.getpid()}!{secrets.token_hex(8)}"
        self.require_valid_channel_name(name)
        return name

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        assert "__asgi_channel__" not in message
        self.require_valid_channel_name(channel)
        await self._write({"op": "send", "channel": channel, "message": message})

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_group_name(group)
        await self._write({"op": "group_send", "group": group, "message": message})

    async def group_add(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        await self._connection()  # first: a new connection replays what is recorded
        self._memberships.add((group, channel))
        await self._write({"op": "group_add", "group": group, "channel": channel})

    async def group_discard(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        self._memberships.discard((group, channel))
        await self._write({"op": "group_discard", "group": group, "channel": channel})

    async def receive(self, channel: str) -> dict[str, Any]:
        self.require_valid_channel_name(channel)
        self._bind_loop()
        queue = self._queues.setdefault(channel, asyncio.Queue())
        self._waiting[channel] += 1
        try:
            if channel not in self._subscribed:
                await self._connection()  # first: a new connection replays what is recorded
                self._subscribed.add(channel)
                await self._write({"op": "subscribe", "channel": channel})
            return await queue.get()
        finally:
            self._waiting[channel] -= 1
            self._used_at[channel] = time.monotonic()
            if self._sweep is None and self._loop is not None:
                self._sweep = self._loop.call_later(IDLE_UNSUBSCRIBE_S, self._drop_idle)

    def _drop_idle(self) -> None:
        """Stop forwarding channels nobody received on lately (answered reply channels)."""
        self._sweep = None
        horizon = time.monotonic() - IDLE_UNSUBSCRIBE_S
        for channel in [c for c in self._subscribed if self._used_at.get(c, 0.0) < horizon]:
            queue = self._queues.get(channel)
            if self._waiting[channel] or (queue is not None and not queue.empty()):
                continue
            self._subscribed.discard(channel)
            self._queues.pop(channel, None)
            self._used_at.pop(channel, None)
            del self._waiting[channel]
            if self._writer is not None and not self._writer.is_closing():
                self._writer.write(encode({"op": "unsubscribe", "channel": channel}))
        if self._subscribed and self._loop is not None:
            self._sweep = self._loop.call_later(IDLE_UNSUBSCRIBE_S, self._drop_idle)

    async def group_has_members(self, group: str) -> bool:
        """False only once the hub said ``group`` is empty; the first call starts watching.

        ``layers.GroupAware``: the broadcaster asks before every flush, so the
        answer is the hub's last word, kept up to date by its ``members`` frames.
        """
        if group not in self._members:
            self._members[group] = None
            if self._writer is not None and not self._writer.is_closing():
                self._writer.write(encode({"op": "watch", "group": group}))
        count = self._members[group]
        return count is None or count > 0

    async def flush(self) -> None:
        self._queues.clear()
        self._memberships.clear()

    async def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
            self._reader_task = None
