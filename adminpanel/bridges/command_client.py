"""The web side of gateway commands: ask the bridge that owns a gateway, over the channel layer.

The web process does not hold the gateway's socket: the bridge does, in the
web server's own process (in-memory layer) or in its own (``manage.py
runbridge``, through the channel hub or Redis). A command is a channel-layer
message to the group ``runboard-bridge.<gateway>``, which the bridge's
listener (``command_server``) joins; the answer comes back on a reply channel.

Each command carries its deadline (wall clock, so it means the same in both
processes). The caller waits no longer than that. Nothing is retried: a
command that timed out is reported as such, and the operator decides what to
do next.

Anything that can post to the layer (Redis, in the split setup) could post a
command, so each is signed: an HMAC, keyed with ``SECRET_KEY``, over the
canonical JSON of the gateway, command, params, reply channel, deadline and
the one-time request id. The bridge refuses a command that is unsigned, badly signed,
expired, replayed or meant for another gateway (``command_server.verify``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from channels.layers import get_channel_layer
from django.utils.crypto import salted_hmac

from gateway_bridge.errors import GatewayUnavailable

MESSAGE_TYPE = "bridge.command"
# One command per operator action, and the connection's state.
COMMANDS = ("force_clear", "requeue", "abort", "clear_and_requeue", "state")


# What a signature covers, besides the gateway it is for.
SIGNED_FIELDS = ("command", "params", "reply_to", "deadline", "request")
SIGNING_SALT = "runboard.bridge-command"
# A deadline further ahead than this is refused: a signed command cannot be kept for later.
MAX_AHEAD_S = 600.0


def signature(gateway: str, message: dict[str, Any]) -> str:
    """HMAC-SHA256 (keyed with SECRET_KEY) of the command's canonical JSON."""
    signed = {name: message.get(name) for name in SIGNED_FIELDS}
    canonical = json.dumps(
        {"gateway": gateway, **signed}, sort_keys=True, separators=(",", ":"), default=str
    )
    return salted_hmac(SIGNING_SALT, canonical, algorithm="sha256").hexdigest()


def signed_command(
    gateway: str,
    command: str,
    params: dict[str, Any],
    reply_to: str,
    deadline: float,
    request: str | None = None,
) -> dict[str, Any]:
    """The channel-layer message for one command; ``request`` is its one-time id."""
    message: dict[str, Any] = {
        "type": MESSAGE_TYPE,
        "command": command,
        "params": params,
        "reply_to": reply_to,
        "request": request or uuid.uuid4().hex,
        "deadline": deadline,
    }
    message["signature"] = signature(gateway, message)
    return message


def group_for(gateway: str) -> str:
    return f"runboard-bridge.{gateway}"


class BridgeNotAnswering(GatewayUnavailable):
    """No bridge answered for this gateway before the deadline."""

    default_code = "BRIDGE_NOT_ANSWERING"


@dataclass(frozen=True, slots=True)
class CommandAnswer:
    """What the bridge answered: ``result`` on success, else the error's code and message."""

    ok: bool
    result: dict[str, Any]
    error_code: str = ""
    error: str = ""
    retryable: bool = False

    @classmethod
    def from_reply(cls, message: dict[str, Any]) -> CommandAnswer:
        return cls(
            ok=bool(message.get("ok")),
            result=dict(message.get("result") or {}),
            error_code=str(message.get("error_code") or ""),
            error=str(message.get("error") or ""),
            retryable=bool(message.get("retryable")),
        )


class Inbox:
    """This process's one reply channel, read by one receive loop for every waiting call.

    A call that times out stops waiting on its own future; the layer's receive()
    is never cancelled mid-way, which on channels-redis would drop the replies
    of other calls buffered for the same process.
    """

    inboxes: ClassVar[dict[tuple[int, int], Inbox]] = {}

    def __init__(self, layer: Any, channel: str) -> None:
        self.layer = layer
        self.channel = channel
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.reader = asyncio.create_task(self.read(), name="bridge-replies")

    @classmethod
    async def of(cls, layer: Any) -> Inbox:
        key = (id(layer), id(asyncio.get_running_loop()))
        inbox = cls.inboxes.get(key)
        if inbox is None or inbox.reader.done():
            inbox = cls(layer, await layer.new_channel("runboard-reply."))
            cls.inboxes[key] = inbox
        return inbox

    async def read(self) -> None:
        while True:
            message = await self.layer.receive(self.channel)
            waiter = self.waiting.pop(str(message.get("request", "")), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)

    @contextlib.contextmanager
    def expect(self, request: str) -> Iterator[asyncio.Future[dict[str, Any]]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[request] = future
        try:
            yield future
        finally:
            self.waiting.pop(request, None)


class BridgeCaller(Protocol):
    """How an action reaches a gateway's bridge: ``call_bridge`` from the web process,
    or the bridge itself when the caller runs beside it (recovery)."""

    def __call__(
        self, gateway: str, command: str, params: dict[str, Any], *, timeout_s: float
    ) -> Awaitable[CommandAnswer]: ...


async def call_bridge(
    gateway: str, command: str, params: dict[str, Any], *, timeout_s: float
) -> CommandAnswer:
    """Send ``command`` to the gateway's bridge and wait at most ``timeout_s`` for its answer.

    Raises ``BridgeNotAnswering`` when nothing answered in time: the bridge is
    not running, or the gateway call is still in flight (it may still act).
    """
    if command not in COMMANDS:
        raise ValueError(f"unknown bridge command {command!r}")
    layer = get_channel_layer()
    if layer is None:
        raise BridgeNotAnswering("no channel layer is configured; nothing was sent")
    inbox = await Inbox.of(layer)
    request = uuid.uuid4().hex
    deadline = time.time() + timeout_s
    with inbox.expect(request) as reply:
        await layer.group_send(
            group_for(gateway),
            signed_command(gateway, command, params, inbox.channel, deadline, request),
        )
        try:
            async with asyncio.timeout(timeout_s):
                message = await reply
        except TimeoutError:
            raise BridgeNotAnswering(
                f"no answer from the bridge of {gateway!r} within {timeout_s:g} s: the bridge "
                "is not running, or the gateway is still working on the call (it may still "
                "act; nothing will be retried)"
            ) from None
    return CommandAnswer.from_reply(message)
