"""Gateway frames: whatever arrives on the socket, the parser answers a frame or a FrameError."""

from __future__ import annotations

import contextlib
import json

from hypothesis import given
from hypothesis import strategies as st

from gateway_bridge import frames
from tests.fuzz.strategies import fuzz, json_values, mutated

RES = {"type": "res", "id": "1", "ok": True, "payload": {}}
EVENT = {"type": "event", "event": "runboard.registry", "payload": {}, "seq": 1}


def parse(raw: str | bytes) -> None:
    with contextlib.suppress(frames.FrameError):
        frames.parse_frame(raw)


@fuzz
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_frame_error(raw: bytes) -> None:
    parse(raw)


@fuzz
@given(json_values)
def test_any_json_parses_or_raises_frame_error(value: object) -> None:
    parse(json.dumps(value))


@fuzz
@given(st.one_of(mutated(RES), mutated(EVENT)))
def test_a_mangled_response_or_event_parses_or_raises_frame_error(value: dict[str, object]) -> None:
    parse(json.dumps(value))
