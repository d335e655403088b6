"""The bridge side of gateway commands: listen for them, carry each out, answer.

The listener is a member of the gateway's group on the channel layer (see
``command_client``; ``GroupMember`` keeps it there). It refuses a command
whose signature does not hold (``bridge_command_refused``), logs each one it
accepts where it runs (``bridge_command_received``, with the audit intent and
request id the web side put in its params, so the log line and the audit
chain's intent name each other), does not start one whose deadline has
passed and cancels one that runs past it. ``local_caller`` answers the same
commands without the channel layer, for callers in the bridge's own process
(nothing crosses a process boundary there, so nothing is signed).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable
from typing import Any

import structlog
from channels.layers import get_channel_layer

from adminpanel.bridges.command_client import (
    COMMANDS,
    MAX_AHEAD_S,
    MESSAGE_TYPE,
    BridgeCaller,
    CommandAnswer,
    group_for,
    signature,
)
from adminpanel.live.group_member import GroupMember
from gateway_bridge.connection import Bridge
from gateway_bridge.errors import GatewayError, GatewayTimeout, GatewayUnavailable

log = structlog.get_logger(__name__)

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


class SeenCommands:
    """One-time ids of accepted commands, kept until their deadline: a replay is refused."""

    def __init__(self) -> None:
        self.deadlines: dict[str, float] = {}

    def first_time(self, command_id: str, deadline: float, now: float) -> bool:
        if len(self.deadlines) > 1000:
            self.deadlines = {k: d for k, d in self.deadlines.items() if d > now}
        if command_id in self.deadlines:
            return False
        self.deadlines[command_id] = deadline
        return True


def verify(
    gateway: str, message: dict[str, Any], seen: SeenCommands, now: float | None = None
) -> str:
    """Why this command must be refused, or "" when its signature, deadline and id hold."""
    now = time.time() if now is None else now
    given = message.get("signature")
    if not isinstance(given, str) or not given:
        return "unsigned"
    if not hmac.compare_digest(given, signature(gateway, message)):
        return "bad signature"
    deadline = message.get("deadline")
    if not isinstance(deadline, int | float) or isinstance(deadline, bool):
        return "no deadline"
    if deadline <= now:
        return "expired"
    if deadline > now + MAX_AHEAD_S:
        return "deadline too far ahead"
    command_id = message.get("request")
    if not isinstance(command_id, str) or not seen.first_time(command_id, deadline, now):
        return "replayed"
    return ""


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
    running: set[asyncio.Task[None]] = set()
    seen = SeenCommands()

    async def handle(message: dict[str, Any]) -> None:
        refusal = verify(bridge.gateway, message, seen)
        given = message.get("params")
        params: dict[str, Any] = given if isinstance(given, dict) else {}
        if refusal:
            log.warning("bridge_command_refused", gateway=bridge.gateway,
                        command=str(message.get("command"))[:40], reason=refusal)  # fmt: skip
            reply = {"ok": False, "error_code": "REFUSED",
                     "error": f"the bridge refused the command: {refusal}"}  # fmt: skip
        else:
            log.info(
                "bridge_command_received",
                gateway=bridge.gateway,
                command=message.get("command"),
                request_id=params.get("request_id", ""),
                intent=params.get("intent"),
                session_key=params.get("session_key", ""),
            )
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
            answer_to = {"type": "bridge.answer", "request": message.get("request"), **reply}
            await layer.send(reply_to, answer_to)

    async def dispatch(message: dict[str, Any]) -> None:
        if message.get("type") != MESSAGE_TYPE:
            return
        task = asyncio.create_task(handle(message), name=f"command:{bridge.gateway}")
        running.add(task)
        task.add_done_callback(running.discard)

    member = GroupMember(
        layer,
        group_for(bridge.gateway),
        dispatch,
        unreachable="bridge_commands_unreachable",
        prefix="runboard-bridge-inbox.",
        gateway=bridge.gateway,
    )
    await member.start()
    try:
        await stop.wait()
    finally:
        for task in list(running):
            task.cancel()
        await member.stop()
