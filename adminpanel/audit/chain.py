"""The audit chain: the only writer of ``AuditEntry``, and its verifier.

Every record is appended in one transaction that reads the chain's head and
writes the next link, so two writers cannot fork the chain (SQLite: the
IMMEDIATE transaction holds the write lock; PostgreSQL: an exclusive table
lock). A record's hash covers its previous hash and a canonical JSON of every
field, so editing any field, removing a record or reordering them breaks the
chain at that record.

The hash is an HMAC keyed with ``RUNBOARD_AUDIT_KEY`` (scheme 2), a key kept
outside the database, so whoever can write the table cannot recompute the
chain after rewriting it. Records written before the key existed keep their
plain SHA-256 (scheme 1) and still verify; the first keyed record after them
seals them, and no unkeyed record may follow a keyed one. The head is noted
outside the database too (``adminpanel.audit.head``), so a cut tail shows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from adminpanel.audit import head as heads
from adminpanel.models import AuditEntry

GENESIS = "0" * 64
UNKEYED = 1  # plain SHA-256: records written before the chain was keyed
KEYED = 2  # HMAC-SHA256 with the audit key
# Salt of the key derived from SECRET_KEY when RUNBOARD_AUDIT_KEY is unset.
DERIVED_KEY_SALT = b"runboard.audit.chain.v2"
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
# A keyed record's hash also covers its scheme, so it cannot be relabelled unkeyed.
KEYED_FIELDS = (*HASHED_FIELDS, "scheme")


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def audit_key() -> bytes:
    """``RUNBOARD_AUDIT_KEY``, or one derived from SECRET_KEY with a salt of its own."""
    if settings.RUNBOARD_AUDIT_KEY:
        return str(settings.RUNBOARD_AUDIT_KEY).encode()
    secret = str(settings.SECRET_KEY).encode()
    return hmac.new(secret, DERIVED_KEY_SALT, hashlib.sha256).digest()


def hash_input(fields: dict[str, Any], names: tuple[str, ...]) -> bytes:
    body = {name: _canonical(fields.get(name)) for name in names}
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return f"{fields['prev_hash']}\n{data}".encode()


def record_hash(fields: dict[str, Any], key: bytes | None = None) -> str:
    """The hash of a record with ``fields`` (their ``scheme`` picks keyed or not)."""
    if fields.get("scheme", UNKEYED) == UNKEYED:
        return hashlib.sha256(hash_input(fields, HASHED_FIELDS)).hexdigest()
    mac = hmac.new(key if key is not None else audit_key(), digestmod=hashlib.sha256)
    mac.update(hash_input(fields, KEYED_FIELDS))
    return mac.hexdigest()


def _entry_fields(entry: AuditEntry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in KEYED_FIELDS}


def lock_chain() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {AuditEntry._meta.db_table} IN EXCLUSIVE MODE")


def append(**fields: Any) -> AuditEntry:
    """Append one record to the chain; ``fields`` are AuditEntry's, without the chain's own."""
    with transaction.atomic():
        lock_chain()
        head = AuditEntry.objects.order_by("-seq").values_list("seq", "hash").first()
        seq, prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS)
        entry = AuditEntry(seq=seq, prev_hash=prev_hash, at=timezone.now(), scheme=KEYED, **fields)
        # JSON fields round-trip through the database: hash what will be read back.
        for name in ("state_before", "planned_calls", "state_after", "calls"):
            setattr(entry, name, json.loads(json.dumps(getattr(entry, name), default=str)))
        entry.hash = record_hash(_entry_fields(entry))
        entry.save(force_insert=True)
        transaction.on_commit(lambda: heads.appended(entry.seq, entry.hash))
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
    unkeyed: int = 0  # entries (the first ones) written before the chain was keyed

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


def verify(expect_head: str | None = None, recorded: Sequence[heads.Head] = ()) -> ChainReport:
    """Walk the chain from the first record; report the first one altered or removed.

    Removing the newest records leaves a shorter chain that is still whole;
    ``expect_head`` (a head hash noted earlier) or ``recorded`` (head records,
    ``adminpanel.audit.head``) catches that too. Each entry must match every
    record of its seq, so a chain cut and grown again past the newest record
    is caught as well.
    """
    by_seq: dict[int, list[heads.Head]] = {}
    for noted in recorded:
        by_seq.setdefault(noted.seq, []).append(noted)
    top = max(recorded, key=lambda h: h.seq, default=None)
    expected_seq, expected_prev = 1, GENESIS
    checked = 0
    hashes: set[str] = set()
    key = audit_key()
    keyed_seen = False
    unkeyed = 0
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
        if entry.scheme not in (UNKEYED, KEYED):
            return _report(checked, entry, f"its hash scheme {entry.scheme} is unknown")
        if entry.scheme == UNKEYED and keyed_seen:
            return _report(
                checked, entry, "it was rewritten with an unkeyed hash after keyed entries"
            )
        keyed_seen = keyed_seen or entry.scheme == KEYED
        unkeyed += entry.scheme == UNKEYED
        if not hmac.compare_digest(record_hash(_entry_fields(entry), key), entry.hash):
            return _report(checked, entry, ALTERED)
        for noted in by_seq.get(entry.seq, ()):
            if entry.hash != noted.hash:
                return _report(
                    checked, entry, f"it differs from the head recorded at {noted.at}: rewritten"
                )
        hashes.add(entry.hash)
        expected_seq, expected_prev = entry.seq + 1, entry.hash
    head_seq = expected_seq - 1
    if expect_head and expect_head not in hashes:  # in it but older: the chain grew since
        what = f"the noted head {expect_head[:16]}… is not in the chain: newer entries were removed"
        return ChainReport(
            checked, head_seq, expected_prev, ChainProblem(head_seq + 1, None, what), unkeyed
        )
    if top is not None and top.seq > head_seq:
        span = f"#{head_seq + 1}" + (f"-#{top.seq}" if top.seq > head_seq + 1 else "")
        what = (
            f"entry {span} was removed: the head recorded at {top.at} "
            f"is #{top.seq} {top.hash[:16]}…"
        )
        return ChainReport(
            checked, head_seq, expected_prev, ChainProblem(head_seq + 1, None, what), unkeyed
        )
    return ChainReport(checked, head_seq, expected_prev, None, unkeyed)


ALTERED = (
    "its content was altered after it was written "
    "(or RUNBOARD_AUDIT_KEY is not the key it was written with)"
)


def _report(checked: int, entry: AuditEntry, what: str) -> ChainReport:
    problem = ChainProblem(entry.seq, entry.pk, what)
    return ChainReport(checked - 1, entry.seq - 1, entry.prev_hash, problem)


def append_once(once_key: str, **fields: Any) -> tuple[AuditEntry, bool]:
    """Append an intent unless one with ``once_key`` exists; (entry, whether it is new).

    The check and the append share the chain's write lock, so two identical
    submits arriving together still make one attempt.
    """
    with transaction.atomic():
        lock_chain()
        first = AuditEntry.objects.filter(once_key=once_key, kind="intent").first()
        if first is not None:
            return first, False
        return append(once_key=once_key, **fields), True
