"""The messages a requeue would send: what the gateway lost of a session, and their keys.

A held message keeps one idempotency key for good (``requeue_key``), so the
gateway runs it at most once however often it is requeued; a message an
earlier requeue started is left out. Read by the action dialog, ``actions``
and retention (which drops a text once its message was requeued).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from adminpanel.models import AuditEntry, DispatchSkip, Session, Waiter

# Messages a requeue looks at: waiters and skips of the last day, at most this many.
REQUEUE_WINDOW = timedelta(days=1)
MAX_MESSAGES = 20

# How a waiter ended when its message was lost (not answered, not waiting any more).
LOST_OUTCOMES = ("aborted", "timed_out", "cleared")


@dataclass(frozen=True, slots=True)
class HeldMessage:
    """A message to requeue; the key makes the gateway run it at most once."""

    text: str
    idempotency_key: str
    source: str  # waiter | skip
    since: str
    preview: str


def requeue_key(gateway: str, source: str, ident: str) -> str:
    """The idempotency key a held message is requeued under, the same on every attempt."""
    digest = hashlib.sha256(f"{gateway}\0{source}\0{ident}".encode()).hexdigest()[:24]
    return f"runboard-requeue-{digest}"


def held_messages(session: Session) -> list[HeldMessage]:
    """Messages the gateway lost: skipped, timed out or aborted while waiting, or dropped
    when a lock was cleared or the gateway restarted — and not requeued before.

    Messages still waiting are not among them: the gateway admits those itself
    once the lock clears. Only messages whose text is known count (2026.5.x
    waiters carry none). Each keeps one idempotency key for good, and a message
    an earlier requeue started is left out, so it is delivered once.
    """
    since = timezone.now() - REQUEUE_WINDOW
    gateway = session.gateway.name
    found: list[tuple[str, HeldMessage]] = []
    waiters = (
        Waiter.objects.filter(session=session, since__gte=since, outcome__in=LOST_OUTCOMES)
        .exclude(text="")
        .order_by("since")[:MAX_MESSAGES]
    )
    for w in waiters:
        key = requeue_key(gateway, "waiter", f"{w.boot_id}/{w.waiter_id}")
        message = HeldMessage(w.text, key, "waiter", w.since.isoformat(), w.preview)
        found.append((w.message_id or w.text, message))
    skips = (
        DispatchSkip.objects.filter(session=session, at__gte=since, kind="skip")
        .exclude(text="")
        .order_by("at")[:MAX_MESSAGES]
    )
    for skip in skips:
        key = requeue_key(gateway, "skip", skip.message_id or f"{skip.boot_id}/{skip.seq}")
        message = HeldMessage(skip.text, key, "skip", skip.at.isoformat(), skip.preview)
        found.append((skip.message_id or skip.text, message))
    done = requeued_keys(session)
    seen: set[str] = set()
    unique = []
    for identity, message in found:
        if identity in seen or message.idempotency_key in done:
            continue  # one message seen as a waiter and as a skip is sent once
        seen.add(identity)
        unique.append(message)
    return unique[:MAX_MESSAGES]


def still_waiting(session: Session) -> int:
    return Waiter.objects.filter(session=session, resolved_at__isnull=True).count()


def requeued_keys(session: Session) -> set[str]:
    """Idempotency keys of messages an earlier requeue of this session started."""
    keys: set[str] = set()
    outcomes = AuditEntry.objects.filter(
        session_pk=session.pk, kind="outcome", action__in=("requeue", "clear_and_requeue")
    ).values_list("calls", flat=True)
    for calls in outcomes:
        for call in calls or []:
            answer = call.get("answer") if isinstance(call, dict) else None
            for row in (answer or {}).get("results") or []:
                if isinstance(row, dict) and row.get("status") in ("started", "duplicate"):
                    keys.add(str(row.get("idempotency_key")))
    return keys
