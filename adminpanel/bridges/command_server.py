"""The bridge side of gateway commands: listen for them, carry each out, answer.

The listener joins the gateway's group on the channel layer (see
``command_client``). It does not start a command whose deadline has passed
and cancels one that runs past it. ``local_caller`` answers the same
commands without the channel layer, for callers in the bridge's own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import structlog
from channels.layers import get_channel_layer

from adminpanel.bridges.command_client import (
    COMMANDS,
    MESSAGE_TYPE,
    BridgeCaller,
    CommandAnswer,
    group_for,
)
from gateway_bridge.connection import Bridge
from gateway_bridge.errors import GatewayError, GatewayTimeout, GatewayUnavailable

log = structlog.get_logger(__name__)

# Channel layers forget group members after a day; the listener joins again well before.
REJOIN_EVERY_S = 600.0
# Of a command's time, what the answer's way back is given.
REPLY_SHARE = 0.1
REPLY_MAX_S = 0.1


async def run_command(
    bridge: Bridge, command: str, params: dict[str, Any], timeout_s: float
) -> dict[str, Any]:
    """One command on ``bridge``: the connection's state, or an action and its steps."""
    if command == "state":
        state = bridge.state
        return {"status": state.status, "mode": state.mode}
    result = await bridge.act(
        command,
        session_key=str(params["session_key"]),
        run_id=str(params.get("run_id") or ""),
        reason=str(params.get("reason") or ""),
        messages=[(str(text), str(key)) for text, key in params.get("messages") or []],
        # Leave the answer time to travel back before the caller gives up.
        timeout_s=timeout_s - min(REPLY_MAX_S, timeout_s * REPLY_SHARE),
    )
    return result.as_dict()


async def answer(bridge: Bridge, message: dict[str, Any]) -> dict[str, Any]:
    """Run one command on ``bridge`` within its deadline; the reply message, never raises."""
    command = message.get("command")
    if command not in COMMANDS:
        return {"ok": False, "error_code": "BAD_COMMAND", "error": f"unknown command {command!r}"}
    remaining = float(message.get("deadline") or 0) - time.time()
    if remaining <= 0:
        return {"ok": False, "error_code": "EXPIRED", "error": "the command arrived too late"}
    params = dict(message.get("params") or {})
    try:
        async with asyncio.timeout(remaining):
            result = await run_command(bridge, str(command), params, remaining)
    except TimeoutError:
        error: GatewayError = GatewayTimeout(
            f"the gateway did not answer {command} in time; it may still act on it"
        )
        return error_reply(error)
    except GatewayError as exc:
        return error_reply(exc)
    except (KeyError, TypeError, ValueError) as exc:
        return {"ok": False, "error_code": "BAD_PARAMS", "error": f"{command}: {exc}"}
    return {"ok": True, "result": result}


def error_reply(exc: GatewayError) -> dict[str, Any]:
    return {"ok": False, "error_code": exc.code, "error": exc.message, "retryable": exc.retryable}


def local_caller(bridge_for: Callable[[str], Bridge]) -> BridgeCaller:
    """A ``BridgeCaller`` that answers from the bridges of this process, directly."""

    async def call(
        gateway: str, command: str, params: dict[str, Any], *, timeout_s: float
    ) -> CommandAnswer:
        try:
            bridge = bridge_for(gateway)
        except KeyError:
            raise GatewayUnavailable(
                f"no bridge for gateway {gateway!r} in this process; nothing was sent"
            ) from None
        message = {"command": command, "params": params, "deadline": time.time() + timeout_s}
        return CommandAnswer.from_reply(await answer(bridge, message))

    return call


async def serve(bridge: Bridge, stop: asyncio.Event) -> None:
    """Listen for this bridge's commands until ``stop``; each runs in its own task."""
    layer = get_channel_layer()
    if layer is None:
        return
    channel = await layer.new_channel("runboard-bridge-inbox.")
    group = group_for(bridge.gateway)
    running: set[asyncio.Task[None]] = set()

    async def handle(message: dict[str, Any]) -> None:
        reply = await answer(bridge, message)
        log.info(
            "bridge_command_answered",
            gateway=bridge.gateway,
            command=message.get("command"),
            ok=reply["ok"],
            error_code=reply.get("error_code", ""),
        )
        reply_to = message.get("reply_to")
        if isinstance(reply_to, str):
            await layer.send(reply_to, {"type": "bridge.answer", **reply})

    joined_at: float | None = None  # not 0.0: the monotonic clock counts from boot
    try:
        while not stop.is_set():
            try:
                if joined_at is None or time.monotonic() - joined_at > REJOIN_EVERY_S:
                    await layer.group_add(group, channel)
                    joined_at = time.monotonic()
                async with asyncio.timeout(1.0):
                    message = await layer.receive(channel)
            except TimeoutError:
                continue
            except Exception as exc:  # the layer (Redis) is away: wait, then join again
                log.warning("bridge_commands_unreachable", gateway=bridge.gateway, error=repr(exc))
                joined_at = None  # a restarted Redis forgot the group
                await asyncio.sleep(1.0)
                continue
            if message.get("type") != MESSAGE_TYPE:
                continue
            task = asyncio.create_task(handle(message), name=f"command:{bridge.gateway}")
            running.add(task)
            task.add_done_callback(running.discard)
    finally:
        with contextlib.suppress(Exception):
            await layer.group_discard(group, channel)
        for task in running:
            task.cancel()
