"""The audit chain's head, noted outside the database so a cut tail is caught.

A chain whose newest entries were deleted is still a whole chain: only a head
(last seq and hash) kept somewhere else shows that more existed. After an
append commits, the head is logged (``audit_head_recorded``) and, with
``RUNBOARD_AUDIT_HEAD_FILE``, appended to that file as one JSON line, every
``RUNBOARD_AUDIT_HEAD_EVERY`` entries or when ``RUNBOARD_AUDIT_HEAD_INTERVAL_S``
passed since the last note. ``verify_audit --head-file`` checks the newest one.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog
from django.conf import settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Head:
    seq: int
    hash: str
    at: str  # ISO time it was recorded

    def line(self) -> str:
        return json.dumps({"seq": self.seq, "hash": self.hash, "at": self.at}) + "\n"


class HeadFileError(ValueError):
    """A head file that cannot be read or holds no head record; the message says why."""


class Recorder:
    """Decides when a head is worth noting (per process; appends come from any thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last_seq = 0
        self.last_at = float("-inf")

    def due(self, seq: int, now: float) -> bool:
        with self.lock:
            every = settings.RUNBOARD_AUDIT_HEAD_EVERY
            interval = settings.RUNBOARD_AUDIT_HEAD_INTERVAL_S
            if seq <= self.last_seq:  # this process appended further before: the tail was cut
                log.warning("audit_head_went_back", seq=seq, recorded_seq=self.last_seq)
            elif seq - self.last_seq < every and now - self.last_at < interval:
                return False
            self.last_seq, self.last_at = seq, now
            return True


RECORDER = Recorder()


def appended(seq: int, hash_: str) -> bool:
    """Called after each append commits; whether this head was recorded."""
    if not RECORDER.due(seq, time.monotonic()):
        return False
    record(Head(seq, hash_, datetime.now(UTC).isoformat(timespec="seconds")))
    return True


def record(head: Head) -> None:
    log.info("audit_head_recorded", seq=head.seq, hash=head.hash)
    path = settings.RUNBOARD_AUDIT_HEAD_FILE
    if not path:
        return
    try:
        # One short write with O_APPEND: lines from several processes never interleave.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, head.line().encode())
        finally:
            os.close(fd)
    except OSError as exc:
        log.warning("audit_head_not_written", path=path, error=str(exc), seq=head.seq)


def newest(path: str | Path) -> Head:
    """The last head record in a head file."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise HeadFileError(f"cannot read the head file {str(path)!r}: {exc.strerror}") from None
    for line in reversed(lines):
        try:
            data = json.loads(line)
            head = Head(int(data["seq"]), str(data["hash"]), str(data.get("at", "")))
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line (the writer died mid-write): the one before counts
        if head.seq >= 1 and len(head.hash) == 64:
            return head
    raise HeadFileError(f"the head file {str(path)!r} holds no head record")
