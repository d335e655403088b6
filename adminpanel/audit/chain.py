"""The audit chain: the only writer of ``AuditEntry``, and its verifier.

Every record is appended in one transaction that reads the chain's head and
writes the next link, so two writers cannot fork the chain (SQLite: the
IMMEDIATE transaction holds the write lock; PostgreSQL: an exclusive table
lock). A record's hash is SHA-256 over its previous hash and a canonical JSON
of every field, so editing any field, removing a record or reordering them
breaks the chain at that record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from adminpanel.models import AuditEntry

GENESIS = "0" * 64
# Every field a record's hash covers, in this order.
HASHED_FIELDS = (
    "seq",
    "at",
    "kind",
    "intent_id",
    "actor",
    "actor_kind",
    "action",
    "gateway",
    "session_key",
    "session_pk",
    "expect_run_id",
    "reason",
    "batch",
    "dry_run",
    "state_before",
    "planned_calls",
    "request_id",
    "once_key",
    "client_addr",
    "result",
    "detail",
    "state_after",
    "calls",
    "duration_ms",
    "prev_hash",
)


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def record_hash(fields: dict[str, Any]) -> str:
    body = {name: _canonical(fields.get(name)) for name in HASHED_FIELDS}
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(f"{fields['prev_hash']}\n{data}".encode()).hexdigest()


def _entry_fields(entry: AuditEntry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in HASHED_FIELDS}


def _lock_chain() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {AuditEntry._meta.db_table} IN EXCLUSIVE MODE")


def append(**fields: Any) -> AuditEntry:
    """Append one record to the chain; ``fields`` are AuditEntry's, without the chain's own."""
    with transaction.atomic():
        _lock_chain()
        head = AuditEntry.objects.order_by("-seq").values_list("seq", "hash").first()
        seq, prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS)
        entry = AuditEntry(seq=seq, prev_hash=prev_hash, at=timezone.now(), **fields)
        # JSON fields round-trip through the database: hash what will be read back.
        for name in ("state_before", "planned_calls", "state_after", "calls"):
            setattr(entry, name, json.loads(json.dumps(getattr(entry, name), default=str)))
        entry.hash = record_hash(_entry_fields(entry))
        entry.save(force_insert=True)
    return entry


@dataclass(frozen=True, slots=True)
class ChainProblem:
    seq: int
    entry_id: int | None
    what: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    checked: int
    head_seq: int
    head_hash: str
    problem: ChainProblem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _in_order(chunk: int = 2000) -> Iterator[AuditEntry]:
    last = 0
    while True:
        rows = list(AuditEntry.objects.filter(seq__gt=last).order_by("seq")[:chunk])
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def verify(expect_head: str | None = None) -> ChainReport:
    """Walk the chain from the first record; report the first one altered or removed.

    Removing the newest records leaves a shorter chain that is still whole;
    ``expect_head`` (a head hash noted earlier) catches that too.
    """
    expected_seq, expected_prev = 1, GENESIS
    checked = 0
    hashes: set[str] = set()
    for entry in _in_order():
        checked += 1
        if entry.seq != expected_seq:
            missing = f"#{expected_seq}" + (
                f"-#{entry.seq - 1}" if entry.seq - 1 > expected_seq else ""
            )
            return _report(checked, entry, f"entry {missing} was removed (chain resumes here)")
        if entry.prev_hash != expected_prev:
            return _report(
                checked, entry, "its link to the entry before does not match: that one was "
                "altered or removed",
            )  # fmt: skip
        if record_hash(_entry_fields(entry)) != entry.hash:
            return _report(checked, entry, "its content was altered after it was written")
        hashes.add(entry.hash)
        expected_seq, expected_prev = entry.seq + 1, entry.hash
    head_seq = expected_seq - 1
    if expect_head and expect_head not in hashes:  # in it but older: the chain grew since
        what = f"the noted head {expect_head[:16]}… is not in the chain: newer entries were removed"
        return ChainReport(checked, head_seq, expected_prev, ChainProblem(head_seq + 1, None, what))
    return ChainReport(checked, head_seq, expected_prev, None)


def _report(checked: int, entry: AuditEntry, what: str) -> ChainReport:
    problem = ChainProblem(entry.seq, entry.pk, what)
    return ChainReport(checked - 1, entry.seq - 1, entry.prev_hash, problem)


def append_once(once_key: str, **fields: Any) -> tuple[AuditEntry, bool]:
    """Append an intent unless one with ``once_key`` exists; (entry, whether it is new).

    The check and the append share the chain's write lock, so two identical
    submits arriving together still make one attempt.
    """
    with transaction.atomic():
        _lock_chain()
        first = AuditEntry.objects.filter(once_key=once_key, kind="intent").first()
        if first is not None:
            return first, False
        return append(once_key=once_key, **fields), True
