"""The gateway protocol's three frame shapes, parsed and validated.

Both ends use this module: the bridge's client and the simulated gateway.
``parse_frame`` never lets a malformed frame through: it raises
``FrameError`` with a reason that names what was wrong, and the caller logs it
and goes on with the next frame.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# OpenClaw caps a frame at 25 MiB; Runboard's registry frames are small, so a
# far lower cap keeps a hostile peer from making us parse megabytes.
MAX_FRAME_BYTES = 4 * 1024 * 1024
MAX_ID_CHARS = 200
MAX_NAME_CHARS = 200


class FrameError(ValueError):
    """A frame that does not follow the protocol. ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class Request:
    id: str
    method: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Response:
    id: str
    ok: bool
    payload: Any = None
    error: dict[str, Any] | None = None

    @property
    def error_code(self) -> str:
        return str((self.error or {}).get("code", "UNKNOWN"))

    @property
    def error_message(self) -> str:
        return str((self.error or {}).get("message", ""))


@dataclass(frozen=True, slots=True)
class Event:
    event: str
    payload: Any
    seq: int | None = None


Frame = Request | Response | Event


def parse_frame(raw: str | bytes) -> Frame:
    if isinstance(raw, bytes):
        if len(raw) > MAX_FRAME_BYTES:
            raise FrameError(f"frame of {len(raw)} bytes is over the {MAX_FRAME_BYTES} byte limit")
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FrameError(f"frame is not UTF-8: {exc.reason}") from None
    if len(raw) > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {len(raw)} characters is over the {MAX_FRAME_BYTES} limit")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise FrameError(f"frame is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise FrameError(f"frame is a JSON {type(data).__name__}, not an object")
    kind = data.get("type")
    if kind == "req":
        return _parse_request(data)
    if kind == "res":
        return _parse_response(data)
    if kind == "event":
        return _parse_event(data)
    raise FrameError(f"frame type {kind!r} is not one of 'req', 'res', 'event'")


def _short_string(data: dict[str, Any], key: str, limit: int) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise FrameError(f"frame field {key!r} must be a non-empty string")
    if len(value) > limit:
        raise FrameError(f"frame field {key!r} is longer than {limit} characters")
    return value


def _parse_request(data: dict[str, Any]) -> Request:
    params = data.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise FrameError("request field 'params' must be an object")
    return Request(
        id=_short_string(data, "id", MAX_ID_CHARS),
        method=_short_string(data, "method", MAX_NAME_CHARS),
        params=params,
    )


def _parse_response(data: dict[str, Any]) -> Response:
    ok = data.get("ok")
    if not isinstance(ok, bool):
        raise FrameError("response field 'ok' must be true or false")
    error = data.get("error")
    if not ok and not isinstance(error, dict):
        raise FrameError("failed response must carry an 'error' object")
    return Response(
        id=_short_string(data, "id", MAX_ID_CHARS),
        ok=ok,
        payload=data.get("payload"),
        error=error if isinstance(error, dict) else None,
    )


def _parse_event(data: dict[str, Any]) -> Event:
    seq = data.get("seq")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0):
        raise FrameError("event field 'seq' must be a non-negative integer")
    return Event(
        event=_short_string(data, "event", MAX_NAME_CHARS),
        payload=data.get("payload"),
        seq=seq,
    )


def encode_request(id: str, method: str, params: dict[str, Any]) -> str:
    return json.dumps({"type": "req", "id": id, "method": method, "params": params})


def encode_response(id: str, payload: Any = None, *, error: dict[str, Any] | None = None) -> str:
    if error is not None:
        return json.dumps({"type": "res", "id": id, "ok": False, "error": error})
    return json.dumps({"type": "res", "id": id, "ok": True, "payload": payload})


def encode_event(event: str, payload: Any, seq: int | None = None) -> str:
    frame: dict[str, Any] = {"type": "event", "event": event, "payload": payload}
    if seq is not None:
        frame["seq"] = seq
    return json.dumps(frame)
