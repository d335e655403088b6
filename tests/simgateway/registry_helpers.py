"""A registry on a manual clock, recording every output, for the unit tests."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from simgateway.profiles import PROFILES, Knobs
from simgateway.registry import ReplyRunRegistry
from simgateway.scheduler import ManualClock, Scheduler

KEY = "agent:main:telegram:direct:42"
OTHER = "agent:main:telegram:direct:43"


@dataclass
class Rig:
    registry: ReplyRunRegistry
    clock: ManualClock
    changes: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    logs: list[tuple[str, str]] = field(default_factory=list)

    def advance(self, seconds: float) -> None:
        self.registry.scheduler.advance(self.clock, seconds)

    def kinds(self, key: str = KEY) -> list[str]:
        return [c["kind"] for c in self.changes if c.get("sessionKey") == key]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [c for c in self.changes if c["kind"] == kind]

    def log_texts(self) -> list[str]:
        return [text for _, text in self.logs]


def rig(profile: str, **knobs: Any) -> Rig:
    """Turns take exactly 1 s (STALL) unless a test says otherwise; no random preflight."""
    knobs.setdefault("compaction_rate", 0.0)
    knobs.setdefault("memory_flush_rate", 0.0)
    clock = ManualClock()
    registry = ReplyRunRegistry(
        profile=PROFILES[profile],
        knobs=Knobs(**knobs),
        scheduler=Scheduler(clock),
        rng=random.Random(1),
    )
    r = Rig(registry, clock)
    registry.listeners.append(r.changes.append)
    registry.event_listeners.append(lambda name, payload: r.events.append((name, payload)))
    registry.log_listeners.append(lambda level, text: r.logs.append((level, text)))
    registry.start()
    return r
