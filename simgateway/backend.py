"""The simulated model backend: how one turn goes, read from the message text.

Directives (tests and the demo put them in message text):

- ``HANG``  the model never answers: the run stays ``running`` with no activity.
  A user abort still cancels it (the recorded 2026.9.6 gateway settled a hung
  fake-model fetch on ``chat.abort``).
- ``WEDGE`` like HANG, but the backend also ignores cancel, so the owner never
  resumes after an abort (the Codex app-server wedge of openclaw#85251).
- ``STALL:<seconds>`` the model answers after that long, with no activity meanwhile.
- ``FAIL``  the run ends ``failed`` with code ``run_failed``.
- ``TOOL``  the turn sits in a tool call (stale takeover uses the tool threshold).
- otherwise the model streams for a lognormal duration (median, cap from knobs).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

_STALL = re.compile(r"STALL:(\d+(?:\.\d+)?)")


@dataclass(frozen=True, slots=True)
class TurnPlan:
    duration_s: float | None  # None: the model never answers
    streams: bool  # emits activity while running
    fail: bool
    ignores_cancel: bool
    tool_call: bool
    reply: str


def plan_turn(text: str, rng: random.Random, *, median_s: float, cap_s: float) -> TurnPlan:
    tool_call = "TOOL" in text
    if "WEDGE" in text or "HANG" in text:
        return TurnPlan(None, False, False, "WEDGE" in text, tool_call, "")
    if stall := _STALL.search(text):
        return TurnPlan(
            float(stall.group(1)), False, "FAIL" in text, False, tool_call, _reply(text)
        )
    duration = _lognormal(rng, median_s, cap_s)
    return TurnPlan(duration, True, "FAIL" in text, False, tool_call, _reply(text))


def _lognormal(rng: random.Random, median_s: float, cap_s: float) -> float:
    if median_s <= 0:
        return 0.0
    return min(cap_s, rng.lognormvariate(math.log(median_s), 0.6))


def _reply(text: str) -> str:
    # Echo like the recorded fake model ("hello MSG-b0b0" -> "pong MSG-b0b0").
    words = text.split()
    return "pong " + (words[-1] if words else "")
