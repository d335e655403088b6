"""Outcomes an attempt could not write itself: ``interrupted``, and writing an outcome once.

An action writes its intent, asks the gateway, then writes its outcome
(``adminpanel.actions``). A worker killed in between, or a database that
refuses the outcome past every retry, leaves an intent alone. Such an intent,
once older than any attempt can run, gets the outcome ``interrupted``: at the
start of each web worker and bridge (``mark_interrupted``), and when a retry
with the same Idempotency-Key asks for it. Whether the gateway acted is then
unknown, and the outcome says so.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from adminpanel.audit import chain as audit
from adminpanel.models import AuditEntry
from adminpanel.observability import counters

log = structlog.get_logger(__name__)

# How long the audit's "state after" waits for the store to mirror a release.
SETTLE_WAIT_S = 0.5
# Pauses between tries of an outcome write the database refused (down, locked, full).
OUTCOME_RETRY_S = (0.2, 0.5, 1.0, 2.0, 4.0)
# Beyond every deadline: an attempt's own slowness never makes it look interrupted.
MARGIN_S = 5.0
INTERRUPTED = (
    "Interrupted: the attempt stopped between its intent and its outcome (a worker or the "
    "database went away). Whether the gateway acted is unknown: check the session."
)
UNRECORDED = (
    "The outcome could not be written to the audit log (the database refused it); "
    "it will be recorded as interrupted."
)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def append_outcome(intent: AuditEntry, **fields: Any) -> AuditEntry | None:
    """The outcome of ``intent``, unless it has one already (then ``None``).

    The check and the append share the chain's write lock, so an attempt
    finishing late and the start-up marking it interrupted cannot both write one.
    """
    with transaction.atomic():
        audit.lock_chain()
        if AuditEntry.objects.filter(intent_id=intent.pk, kind="outcome").exists():
            return None
        return audit.append(kind="outcome", intent_id=intent.pk, **fields)


def interrupted_before(now: datetime) -> datetime:
    """Intents older than this cannot still be running: past every deadline an attempt has."""
    budget = settings.RUNBOARD_CALL_TIMEOUT_S + SETTLE_WAIT_S + sum(OUTCOME_RETRY_S)
    return now - timedelta(seconds=budget + MARGIN_S)


def mark_one_interrupted(intent: AuditEntry) -> AuditEntry | None:
    entry = append_outcome(
        intent,
        actor=intent.actor,
        actor_kind=intent.actor_kind,
        action=intent.action,
        gateway=intent.gateway,
        session_key=intent.session_key,
        session_pk=intent.session_pk,
        result="interrupted",
        detail=INTERRUPTED,
        dry_run=intent.dry_run,
    )
    if entry is not None:
        counters.count("actions", 1, action=intent.action, result="interrupted")
        log.warning("action_interrupted", action=intent.action, gateway=intent.gateway,
                    session_key=intent.session_key, audit_id=intent.pk,
                    outcome_id=entry.pk)  # fmt: skip
    return entry


def mark_interrupted(now: datetime | None = None) -> int:
    """Give every intent left without an outcome past its deadline the outcome ``interrupted``.

    Run at the start of each web worker and bridge (``runweb``, ``runbridge``,
    ``manage.py mark_interrupted``); returns how many it marked.
    """
    cutoff = interrupted_before(now or timezone.now())
    stale = AuditEntry.objects.filter(kind="intent", at__lt=cutoff, outcome__isnull=True)
    return sum(mark_one_interrupted(intent) is not None for intent in stale.order_by("seq"))
