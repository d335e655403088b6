"""The gateway's log file, for ``logs.tail``: cursor = byte offset, like OpenClaw.

Lines are JSON objects shaped like OpenClaw's (tslog) file lines, with the
text under ``message`` so a reader can match the known signatures.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

_LEVELS = {"debug": (2, "DEBUG"), "info": (3, "INFO"), "warn": (4, "WARN"), "error": (5, "ERROR")}


class GatewayLog:
    def __init__(self, *, max_lines: int = 5000, clock: Callable[[], float] = time.time) -> None:
        self._lines: deque[tuple[int, str]] = deque(maxlen=max_lines)  # (start offset, line)
        self._size = 0
        self._clock = clock

    @property
    def size(self) -> int:
        return self._size

    def append(self, level: str, text: str, *, subsystem: str = "reply-run") -> None:
        level_id, level_name = _LEVELS.get(level, (3, "INFO"))
        stamp = datetime.fromtimestamp(self._clock(), UTC).isoformat(timespec="milliseconds")
        name = json.dumps({"subsystem": subsystem}, separators=(",", ":"))
        line = json.dumps(
            {
                "0": name,
                "1": text,
                "_meta": {
                    "logLevelId": level_id,
                    "logLevelName": level_name,
                    "date": stamp,
                    "name": name,
                },
                "time": stamp,
                "message": text,
            },
            ensure_ascii=False,
        )
        self._lines.append((self._size, line))
        self._size += len(line.encode()) + 1

    def tail(self, cursor: int | None, limit: int) -> dict[str, Any]:
        """Lines after ``cursor`` (or the last ``limit`` lines without one)."""
        reset = cursor is not None and cursor > self._size
        if cursor is None or reset:
            chosen = list(self._lines)[-limit:] if limit else []
            more = False
        else:
            after = [(off, line) for off, line in self._lines if off >= cursor]
            chosen, more = after[:limit], len(after) > limit
        end = chosen[-1][0] + len(chosen[-1][1].encode()) + 1 if more else self._size
        return {
            "cursor": end,
            "size": self._size,
            "lines": [line for _, line in chosen],
            "truncated": more,
            "reset": reset,
        }
