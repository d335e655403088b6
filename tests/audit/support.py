"""Attempts written straight into the audit chain, shaped as ``adminpanel.actions`` writes them."""

from __future__ import annotations

import contextlib
import re
import types
from collections.abc import Iterator
from datetime import datetime
from html import unescape
from typing import Any

import pytest
from django.db import connection

from adminpanel.audit import chain as audit
from adminpanel.models import AuditEntry, Gateway, Session

KEY = "agent:main:telegram:direct:alice"


def make_session(key: str = KEY, gateway: str = "sim") -> Session:
    gw, _ = Gateway.objects.get_or_create(name=gateway)
    return Session.objects.create(
        gateway=gw, session_key=key, locked=True, run_id="run-1", phase="running"
    )


def attempt(
    *,
    actor: str = "operator",
    actor_kind: str = "user",
    action: str = "force_clear",
    gateway: str = "sim",
    session_key: str = KEY,
    session_pk: int | None = None,
    run_id: str = "run-1",
    reason: str = "user reported no answer",
    result: str | None = "success",
    detail: str = "Lock of run run-1 cleared.",
    request_id: str = "req-1",
    client_addr: str = "127.0.0.1",
    batch: str = "",
    dry_run: bool = False,
    duration_ms: int = 42,
) -> tuple[AuditEntry, AuditEntry | None]:
    """One attempt: its intent and (unless ``result`` is None, as after a crash) its outcome."""
    before = {"locked": True, "run_id": run_id, "phase": "running", "result": "",
              "lock_age_s": 312.5, "last_progress_s": 300.1, "waiters": 1, "flags": 1,
              "mode": "plugin"}  # fmt: skip
    intent = audit.append(
        kind="intent",
        actor=actor,
        actor_kind=actor_kind,
        action=action,
        gateway=gateway,
        session_key=session_key,
        session_pk=session_pk,
        expect_run_id=run_id,
        reason=reason,
        batch=batch,
        dry_run=dry_run,
        state_before=before,
        planned_calls=[{"method": "runboard.registry.forceClear",
                        "params": {"sessionKey": session_key, "expectRunId": run_id}}],
        request_id=request_id,
        client_addr=client_addr,
    )  # fmt: skip
    if result is None:
        return intent, None
    after = {**before, "locked": False, "run_id": "", "phase": "", "lock_age_s": None}
    answer: dict[str, Any] = {"cleared": result == "success", "run_id": run_id}
    outcome = audit.append(
        kind="outcome",
        intent_id=intent.pk,
        actor=actor,
        actor_kind=actor_kind,
        action=action,
        gateway=gateway,
        session_key=session_key,
        session_pk=session_pk,
        result=result,
        detail=detail,
        state_after=after,
        calls=[{"command": "force_clear",
                "params": {"session_key": session_key, "expect_run_id": run_id,
                           "reason": reason},
                "answer": answer}],
        duration_ms=duration_ms,
        dry_run=dry_run,
    )  # fmt: skip
    return intent, outcome


@contextlib.contextmanager
def audit_clock(monkeypatch: pytest.MonkeyPatch, moment: datetime) -> Iterator[None]:
    """Entries appended inside are stamped ``moment`` (the chain takes its time from the clock)."""
    with monkeypatch.context() as patch:
        patch.setattr(audit, "timezone", types.SimpleNamespace(now=lambda: moment))
        yield


def attempt_ids(html: str) -> list[int]:
    """The audit page's rows, in page order, by their audit entry id."""
    return [int(n) for n in re.findall(r'<tr class="attempt" id="attempt-(\d+)"', html)]


def next_link(html: str) -> str | None:
    found = re.search(r'<a rel="next" href="([^"]+)"', html)
    return unescape(found.group(1)) if found else None


APPEND_ONLY_TRIGGER = "runboard_audit_append_only"


def tamper(sql: str, params: list[Any]) -> None:
    """Run ``sql`` on the audit table as an attacker owning it would: on PostgreSQL the
    append-only trigger is switched off around it (the owner may), as a cover-up would."""
    table = AuditEntry._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The test's own inserts have deferred foreign-key checks pending: run them now,
            # since a table with pending trigger events cannot be altered.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {APPEND_ONLY_TRIGGER}")
        try:
            cursor.execute(sql, params)
        finally:
            if connection.vendor == "postgresql":
                cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER {APPEND_ONLY_TRIGGER}")
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
