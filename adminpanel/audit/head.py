"""The audit chain's head, noted outside the database so a cut tail is caught.

A chain whose newest entries were deleted is still a whole chain: only a head
(last seq and hash) kept somewhere else shows that more existed. A head is
logged (``audit_head_recorded``) and, with ``RUNBOARD_AUDIT_HEAD_FILE``,
appended to that file as one JSON line:

- after an append commits, every ``RUNBOARD_AUDIT_HEAD_EVERY`` entries or when
  ``RUNBOARD_AUDIT_HEAD_INTERVAL_S`` passed since the last note;
- every ``RUNBOARD_AUDIT_HEAD_INTERVAL_S`` by each bridge supervisor
  (``watch``), read from the database, when it changed since the last note: a
  quiet system whose tail was cut still has a newer head on record.

A head behind the one last noted (the tail was cut, or the database restored)
is warned about (``audit_head_went_back``) and not recorded, so the newest
record stays the higher head and ``verify_audit --head-file`` (which checks
every record) reports the cut; a chain cut and grown again past the
recorded head differs from the records of the entries it replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection

from adminpanel.models import AuditEntry

log = structlog.get_logger(__name__)

# The database's head is read at most this often (an interval of 0 notes every append).
WATCH_MIN_S = 0.5


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
        self.last_hash = ""
        self.last_at = float("-inf")
        self.warned: tuple[int, str] | None = None  # the backward head last warned about

    def due(self, seq: int, now: float, hash_: str = "") -> bool:
        """After an append: whether its head is to be noted."""
        with self.lock:
            every = settings.RUNBOARD_AUDIT_HEAD_EVERY
            interval = settings.RUNBOARD_AUDIT_HEAD_INTERVAL_S
            if self.went_back(seq, hash_):
                return False
            if seq - self.last_seq < every and now - self.last_at < interval:
                return False
            self.note(seq, hash_, now)
            return True

    def observed(self, seq: int, hash_: str, now: float) -> bool:
        """The head read from the database: whether it is new and to be noted."""
        with self.lock:
            if self.went_back(seq, hash_) or (seq, hash_) == (self.last_seq, self.last_hash):
                return False
            self.note(seq, hash_, now)
            return True

    def went_back(self, seq: int, hash_: str) -> bool:
        """A head behind the last noted (or the same seq, another hash): warned once each."""
        replaced = (
            seq == self.last_seq and bool(hash_ and self.last_hash) and hash_ != self.last_hash
        )
        if not (seq < self.last_seq or replaced):
            return False
        if self.warned != (seq, hash_):
            self.warned = (seq, hash_)
            log.warning(
                "audit_head_went_back",
                seq=seq,
                hash=hash_,
                recorded_seq=self.last_seq,
                recorded_hash=self.last_hash,
            )
        return True

    def note(self, seq: int, hash_: str, now: float) -> None:
        self.last_seq, self.last_hash, self.last_at = seq, hash_, now

    def start_from(self, head: Head) -> None:
        """Carry on from a head recorded earlier (by this deployment, in the head file)."""
        with self.lock:
            if head.seq > self.last_seq:
                self.last_seq, self.last_hash = head.seq, head.hash


RECORDER = Recorder()


def appended(seq: int, hash_: str) -> bool:
    """Called after each append commits; whether this head was recorded."""
    if not RECORDER.due(seq, time.monotonic(), hash_):
        return False
    record(Head(seq, hash_, now_iso()))
    return True


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def current() -> tuple[int, str]:
    """The chain's head in the database: (0, "") while it is empty."""
    found = AuditEntry.objects.order_by("-seq").values_list("seq", "hash").first()
    return (found[0], found[1]) if found else (0, "")


def check_current(recorder: Recorder | None = None) -> bool:
    """Read the database's head; record it if it changed. Whether it was recorded."""
    recorder = recorder or RECORDER
    try:
        seq, hash_ = current()
    except DatabaseError as exc:
        # Away for now (down, locked): the next round reads it again.
        connection.close()
        log.warning(
            "audit_head_not_read", error=(str(exc).strip() or type(exc).__name__).splitlines()[0]
        )
        return False
    if seq == 0 and recorder.last_seq == 0:
        return False
    if not recorder.observed(seq, hash_, time.monotonic()):
        return False
    record(Head(seq, hash_, now_iso()))
    return True


def start_from_file(recorder: Recorder | None = None) -> None:
    """The newest head in ``RUNBOARD_AUDIT_HEAD_FILE`` (if any) is the one to compare with:
    a tail cut while no process ran is warned about at the first read."""
    path = settings.RUNBOARD_AUDIT_HEAD_FILE
    if path and Path(path).exists():
        try:
            (recorder or RECORDER).start_from(newest(path))
        except HeadFileError as exc:
            log.warning("audit_head_file_unreadable", path=path, error=str(exc))


async def watch(stop: asyncio.Event) -> None:
    """Until ``stop``: every ``RUNBOARD_AUDIT_HEAD_INTERVAL_S``, note the database's head
    if it changed (``check_current``). Runs in each bridge supervisor."""
    # On the thread the process's other queries use (one connection, as ingest's).
    await sync_to_async(start_from_file, thread_sensitive=True)()
    check = sync_to_async(check_current, thread_sensitive=True)
    every = max(settings.RUNBOARD_AUDIT_HEAD_INTERVAL_S, WATCH_MIN_S)
    while not stop.is_set():
        await check()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


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
    return read(path)[-1]


def read(path: str | Path) -> list[Head]:
    """Every head record in a head file, oldest first (at least one)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise HeadFileError(f"cannot read the head file {str(path)!r}: {exc.strerror}") from None
    found = []
    for line in lines:
        try:
            data = json.loads(line)
            head = Head(int(data["seq"]), str(data["hash"]), str(data.get("at", "")))
        except (ValueError, KeyError, TypeError):
            continue  # a torn line (its writer died mid-write): the others count
        if head.seq >= 1 and len(head.hash) == 64:
            found.append(head)
    if not found:
        raise HeadFileError(f"the head file {str(path)!r} holds no head record")
    return found
