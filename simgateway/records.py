"""The simulated registry's plain data: messages, waiters, operations, session-store rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simgateway.backend import TurnPlan
from simgateway.chatevents import RunEvents
from simgateway.scheduler import Timer

PREVIEW_CHARS = 120
TEXT_CHARS = 8000
DRAIN_FAILED_REPLY = "⚠️ Previous run is still shutting down. Please try again in a moment."
# What 2026.9.6 put in chat.history for a force-cleared turn (the recorded text, cut short).
CLEARED_REPLY = "OpenClaw couldn't produce or deliver a reply…"
UNINTERRUPTIBLE_KINDS = frozenset({"heartbeat", "control_abort"})

ChangeListener = Callable[[dict[str, Any]], None]
EventListener = Callable[[str, dict[str, Any]], None]
LogListener = Callable[[str, str], None]


def ms(seconds: float) -> int:
    return int(seconds * 1000)


@dataclass(slots=True)
class Message:
    """One inbound message. Its id is also the run id it will run under."""

    run_id: str
    session_key: str
    text: str
    turn_kind: str
    # In the session's follow-up queue (2026.9), not in the registry's waitForIdle.
    queued: bool = False


@dataclass(slots=True)
class Waiter:
    waiter_id: str
    message: Message
    since: float
    timeout_ms: int | None
    blocking_run_id: str
    timer: Timer | None = None


@dataclass(slots=True)
class Operation:
    """A live registry entry (``ReplyOperation``): the session key is locked."""

    message: Message
    session_id: str
    started_at: float
    last_activity_at: float
    events: RunEvents
    # The id the registry reports: the chat run id, or its own (``distinct_ids``).
    op_id: str
    phase: str = "queued"
    result: str | None = None
    code: str | None = None
    ended_at: float | None = None
    plan: TurnPlan | None = None
    in_tool_call: bool = False
    timers: list[Timer] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.message.run_id

    @property
    def session_key(self) -> str:
        return self.message.session_key

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()


@dataclass(slots=True)
class SessionRecord:
    """The persisted session store's row for a key (``sessions.json``)."""

    key: str
    session_id: str
    agent_id: str
    channel: str
    updated_at: float
    status: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class ChatRun:
    """The gateway's view of a chat run, for ``chat.send`` idempotency."""

    session_key: str
    events: RunEvents
    status: str = "in_flight"  # in_flight | ok | error


def parse_session_key(key: str) -> tuple[str, str]:
    """``agent:<agent>:<channel>:direct:<peer>`` → (agent, channel); blanks when absent."""
    parts = key.split(":")
    if len(parts) < 2 or parts[0] != "agent":
        return "", ""
    return parts[1], parts[2] if len(parts) >= 4 else ""
