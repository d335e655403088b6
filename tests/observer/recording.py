"""Replays the recorded real OpenClaw 2026.9.6 conversation into an ``ObserverTranslator``.

``data/openclaw-2026.9.6-frames.jsonl`` is a copy of
/work/shared/reference/openclaw-2026.9.6-frames.jsonl: one frame a line, ``dir``
in (gateway → client) or out, ``t`` the time it was seen. The replay feeds
what the bridge would feed: every event, the ``sessions.list`` and
``logs.tail`` answers, and a ``settle`` at each frame's time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway_bridge.events import RegistryEvent, Snapshot
from gateway_bridge.observer.translator import ObserverTranslator, waiter_timeout_ms_for

RECORDING = Path(__file__).parent / "data" / "openclaw-2026.9.6-frames.jsonl"


def frames() -> list[dict[str, Any]]:
    return [json.loads(line) for line in RECORDING.read_text().splitlines() if line.strip()]


def hello() -> dict[str, Any]:
    for f in frames():
        payload = f["frame"].get("payload")
        if isinstance(payload, dict) and payload.get("type") == "hello-ok":
            return payload
    raise AssertionError("the recording has no hello-ok")


def replay(gateway: str = "real") -> tuple[Snapshot, list[RegistryEvent], ObserverTranslator]:
    """The first snapshot, every event after it, and the translator, as a bridge would see."""
    server = hello()["server"]
    translator = ObserverTranslator(
        gateway=gateway,
        boot_id=f"observer:{server['bootId']}:replay",
        version=server["version"],
        waiter_timeout_ms=waiter_timeout_ms_for(server["version"]),
    )
    methods: dict[str, str] = {}
    snapshot: Snapshot | None = None
    events: list[RegistryEvent] = []
    for record in frames():
        frame, t = record["frame"], record["t"]
        if record["dir"] == "out":
            methods[frame["id"]] = frame["method"]
        elif frame["type"] == "event":
            events.extend(translator.event(frame["event"], frame.get("payload"), t))
        elif frame["type"] == "res" and frame.get("ok"):
            method, payload = methods.get(frame["id"]), frame["payload"]
            if method == "sessions.list":
                at = payload["ts"] / 1000
                if snapshot is None:
                    snapshot = translator.load(payload["sessions"], at, t)
                else:
                    events.extend(translator.sessions(payload["sessions"], at, t))
            elif method == "logs.tail":
                events.extend(translator.log_lines(payload["lines"], t))
        events.extend(translator.settle(t))
    assert snapshot is not None
    return snapshot, events, translator
