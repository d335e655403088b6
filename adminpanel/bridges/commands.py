"""Gateway commands from the web to the bridge that owns the gateway, over the channel layer.

The web process does not hold the gateway's socket: the bridge does, in the
web server's own process (``manage.py demo``, in-memory layer) or in its own
(``manage.py runbridge``, Redis layer). A command is a channel-layer message
to the group ``runboard-bridge.<gateway>``, which the bridge's listener joins;
the answer comes back on a reply channel.

Each command carries its deadline (wall clock, so it means the same in both
processes). The caller waits no longer than that; the listener does not start
a command whose deadline has passed and cancels one that runs past it. Nothing
is retried on either side: a command that timed out is reported as such, and
the operator decides what to do next.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from channels.layers import get_channel_layer

from gateway_bridge.errors import GatewayError, GatewayTimeout, GatewayUnavailable

if TYPE_CHECKING:
    from gateway_bridge.connection import Bridge

log = structlog.get_logger(__name__)

MESSAGE_TYPE = "bridge.command"
COMMANDS = ("force_clear", "requeue", "abort", "state")
# Channel layers forget group members after a day; the listener joins again well before.
REJOIN_EVERY_S = 600.0


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


# The web side ----------------------------------------------------------------------


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
    reply_to = await layer.new_channel("runboard-reply.")
    deadline = time.time() + timeout_s
    await layer.group_send(
        group_for(gateway),
        {
            "type": MESSAGE_TYPE,
            "command": command,
            "params": params,
            "reply_to": reply_to,
            "deadline": deadline,
        },
    )
    try:
        async with asyncio.timeout(timeout_s):
            message = await layer.receive(reply_to)
    except TimeoutError:
        raise BridgeNotAnswering(
            f"no answer from the bridge of {gateway!r} within {timeout_s:g} s: the bridge is "
            "not running, or the gateway is still working on the call (it may still act; "
            "nothing will be retried)"
        ) from None
    return CommandAnswer(
        ok=bool(message.get("ok")),
        result=dict(message.get("result") or {}),
        error_code=str(message.get("error_code") or ""),
        error=str(message.get("error") or ""),
        retryable=bool(message.get("retryable")),
    )


# The bridge side -------------------------------------------------------------------


Handler = Callable[["Bridge", dict[str, Any]], Awaitable[dict[str, Any]]]


async def _force_clear(bridge: Bridge, params: dict[str, Any]) -> dict[str, Any]:
    result = await bridge.force_clear(
        str(params["session_key"]), str(params["expect_run_id"]), str(params["reason"])
    )
    current = result.current
    return {
        "cleared": result.cleared,
        "run_id": result.run_id,
        "reason": result.reason,
        "phase": result.phase,
        "seq": result.seq,
        "fallback": result.fallback,
        "detail": result.detail,
        "current": None
        if current is None
        else {"run_id": current.run_id, "phase": current.phase, "result": current.result},
    }


async def _requeue(bridge: Bridge, params: dict[str, Any]) -> dict[str, Any]:
    messages = [(str(text), str(key)) for text, key in params["messages"]]
    results = await bridge.requeue(str(params["session_key"]), messages)
    return {
        "results": [
            {
                "idempotency_key": r.idempotency_key,
                "run_id": r.run_id,
                "status": r.status,
                "fallback": r.fallback,
            }
            for r in results
        ]
    }


async def _abort(bridge: Bridge, params: dict[str, Any]) -> dict[str, Any]:
    result = await bridge.abort(str(params["session_key"]), params.get("run_id") or None)
    return {"aborted": result.aborted, "run_ids": list(result.run_ids)}


async def _state(bridge: Bridge, params: dict[str, Any]) -> dict[str, Any]:
    state = bridge.state
    return {"status": state.status, "mode": state.mode}


HANDLERS: dict[str, Handler] = {
    "force_clear": _force_clear,
    "requeue": _requeue,
    "abort": _abort,
    "state": _state,
}


async def answer(bridge: Bridge, message: dict[str, Any]) -> dict[str, Any]:
    """Run one command on ``bridge`` within its deadline; the reply message, never raises."""
    command = message.get("command")
    handler = HANDLERS.get(command) if isinstance(command, str) else None
    if handler is None:
        return {"ok": False, "error_code": "BAD_COMMAND", "error": f"unknown command {command!r}"}
    remaining = float(message.get("deadline") or 0) - time.time()
    if remaining <= 0:
        return {"ok": False, "error_code": "EXPIRED", "error": "the command arrived too late"}
    try:
        async with asyncio.timeout(remaining):
            result = await handler(bridge, dict(message.get("params") or {}))
    except TimeoutError:
        error: GatewayError = GatewayTimeout(
            f"the gateway did not answer {command} in time; it may still act on it"
        )
        return _error(error)
    except GatewayError as exc:
        return _error(exc)
    except (KeyError, TypeError, ValueError) as exc:
        return {"ok": False, "error_code": "BAD_PARAMS", "error": f"{command}: {exc}"}
    return {"ok": True, "result": result}


def _error(exc: GatewayError) -> dict[str, Any]:
    return {"ok": False, "error_code": exc.code, "error": exc.message, "retryable": exc.retryable}


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
            if joined_at is None or time.monotonic() - joined_at > REJOIN_EVERY_S:
                await layer.group_add(group, channel)
                joined_at = time.monotonic()
            try:
                async with asyncio.timeout(1.0):
                    message = await layer.receive(channel)
            except TimeoutError:
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
