"""``agent`` and ``chat`` event payloads shaped like the recorded 2026.9.6 gateway.

See /work/shared/reference/openclaw-2026.9.6-frames.jsonl: a turn shows
``run_status`` phases, lifecycle ``start``/``model``/``end`` (or ``error``),
assistant deltas, and a ``chat`` ``final``. Each run numbers its own events
(``seq`` inside the payload); ``RunEvents`` keeps that counter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Emit = Callable[[str, dict[str, Any]], None]

_PREPARING = ("preparing_workspace", "preparing_context")


class RunEvents:
    """Builds and emits the protocol events of one chat run."""

    def __init__(
        self, emit: Emit, *, run_id: str, session_key: str, session_id: str, agent_id: str
    ) -> None:
        self._emit = emit
        self.run_id = run_id
        self.session_key = session_key
        self.session_id = session_id
        self.agent_id = agent_id
        self._agent_seq = 0
        self._chat_seq = 0

    def _agent(self, stream: str, data: dict[str, Any], ts: int) -> None:
        self._agent_seq += 1
        self._emit(
            "agent",
            {
                "runId": self.run_id,
                "sessionKey": self.session_key,
                "sessionId": self.session_id,
                "agentId": self.agent_id,
                "stream": stream,
                "data": data,
                "seq": self._agent_seq,
                "ts": ts,
                "isHeartbeat": False,
            },
        )

    def _chat(self, state: str, **fields: Any) -> None:
        self._chat_seq += 1
        payload = {
            "runId": self.run_id,
            "sessionKey": self.session_key,
            "agentId": self.agent_id,
            "seq": self._chat_seq,
            "state": state,
        }
        self._emit("chat", payload | fields)

    def started(self, ts: int) -> None:
        for phase in _PREPARING:
            self._chat("status", phase=phase)
            self._agent("run_status", {"phase": phase}, ts)
        self._agent("lifecycle", {"phase": "start", "startedAt": ts}, ts)
        self._chat("status", phase="starting_model")
        self._agent("run_status", {"phase": "starting_model"}, ts)
        self._agent("lifecycle", {"phase": "model", "provider": "sim", "model": "sim-1"}, ts)

    def delta(self, text: str, ts: int) -> None:
        self._agent("assistant", {"text": text, "delta": text}, ts)
        self._chat("delta", deltaText=text, message=_assistant(text, ts))

    def tool_call(self, ts: int) -> None:
        self._agent("tool", {"phase": "start", "name": "exec"}, ts)

    def completed(self, reply: str, started_at: int, ts: int) -> None:
        data = {"phase": "end", "stopReason": "stop", "aborted": False}
        self._agent("lifecycle", data | {"startedAt": started_at, "endedAt": ts}, ts)
        self._chat("final", stopReason="stop", message=_assistant(reply, ts))

    def failed(self, error: str, started_at: int, ts: int) -> None:
        data = {"phase": "error", "error": error, "aborted": False}
        self._agent("lifecycle", data | {"startedAt": started_at, "endedAt": ts}, ts)
        self._chat("error", errorMessage=error, errorKind="unknown")

    def aborted(self, started_at: int, ts: int) -> None:
        self._chat("aborted", stopReason="rpc")
        data = {"phase": "end", "status": "cancelled", "aborted": True, "stopReason": "rpc"}
        self._agent("lifecycle", data | {"startedAt": started_at, "endedAt": ts}, ts)

    def final_without_message(self) -> None:
        # A message that never got the lock ends like this (recording: the
        # waiting run after chat.abort).
        self._chat("final")

    def final_text(self, text: str, ts: int) -> None:
        self._chat("final", message=_assistant(text, ts))


def _assistant(text: str, ts: int) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}], "timestamp": ts}
