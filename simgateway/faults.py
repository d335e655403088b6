"""Fault injection towards one registry subscriber, for testing the bridge.

``duplicate_rate`` delivers some registry events twice, ``reorder_window``
swaps neighbours within windows of that many events, ``garbage_rate`` slips a
malformed or hostile frame in before some events. All seeded, all default off.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

from simgateway.profiles import Knobs

# How long a partly filled reorder window may hold events back.
REORDER_FLUSH_S = 0.02

_GARBAGE: tuple[str, ...] = (
    "{not json",
    "[1, 2, 3]",
    '"just a string"',
    json.dumps({"type": "event", "event": 42, "payload": {}}),
    json.dumps({"type": "res", "id": "no-such-request", "ok": "yes"}),
    json.dumps({"type": "res", "id": "no-such-request", "ok": True, "payload": {}}),
    json.dumps({"type": "telepathy", "payload": {}}),
    json.dumps({"type": "event", "event": "chat", "payload": "not an object"}),
    # Registry events a strict decoder must refuse. None carries a valid seq,
    # so dropping them loses nothing.
    json.dumps({"type": "event", "event": "runboard.registry", "payload": {"kind": "phase"}}),
    json.dumps(
        {
            "type": "event",
            "event": "runboard.registry",
            "payload": {"bootId": "b", "seq": "seven", "ts": 0, "kind": "bogus.kind"},
        }
    ),
    json.dumps({"type": "event", "event": "runboard.registry", "payload": None}),
)


def garbage_frame(rng: random.Random) -> str:
    return rng.choice(_GARBAGE)


class SubscriberFaults:
    """Sits between the registry and one subscriber's send queue."""

    def __init__(
        self,
        knobs: Knobs,
        rng: random.Random,
        send: Callable[[str], None],
        call_later: Callable[[float, Callable[[], None]], object],
    ) -> None:
        self._knobs = knobs
        self._rng = rng
        self._send = send
        self._call_later = call_later
        self._pending: list[str] = []
        self._flush_armed = False

    def deliver(self, frame: str) -> None:
        if self._knobs.reorder_window <= 1:
            self._emit(frame)
            return
        self._pending.append(frame)
        if len(self._pending) >= self._knobs.reorder_window:
            self.flush()
        elif not self._flush_armed:
            self._flush_armed = True
            self._call_later(REORDER_FLUSH_S, self.flush)

    def flush(self) -> None:
        self._flush_armed = False
        frames, self._pending = self._pending, []
        i = 0
        while i < len(frames) - 1:
            if self._rng.random() < 0.5:
                frames[i], frames[i + 1] = frames[i + 1], frames[i]
                i += 2
            else:
                i += 1
        for frame in frames:
            self._emit(frame)

    def _emit(self, frame: str) -> None:
        self.maybe_garbage()
        self._send(frame)
        if self._rng.random() < self._knobs.duplicate_rate:
            self._send(frame)

    def maybe_garbage(self) -> None:
        if self._knobs.garbage_rate and self._rng.random() < self._knobs.garbage_rate:
            self._send(garbage_frame(self._rng))
