"""Actions cut off between intent and outcome, on a real gateway and a real SQLite file.

The gateway is the simulated one with its bridge in the test's loop (as in
``tests/actions``); the fault is real: another connection holds SQLite's
write lock while the action's outcome is written.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.utils import timezone

from adminpanel import action_outcomes, actions
from adminpanel.actions import Actor, Target
from adminpanel.audit import chain as audit
from adminpanel.bridges.command_client import CommandAnswer, call_bridge
from adminpanel.models import AuditEntry
from tests.actions.conftest import Hung, hung  # noqa: F401 - the fixture
from tests.actions.support import HUNG

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("quick_supervisor")]

OPERATOR = Actor("operator")


class StoreLock:
    """SQLite's write lock, held by a connection of its own (as another process would)."""

    def __init__(self) -> None:
        self.db: sqlite3.Connection | None = None

    def take(self) -> None:
        path = connection.settings_dict["NAME"]
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("BEGIN EXCLUSIVE")

    def drop(self) -> None:
        if self.db is not None:
            self.db.execute("ROLLBACK")
            self.db.close()
            self.db = None


@pytest.fixture
def store_lock(monkeypatch: pytest.MonkeyPatch) -> Iterator[StoreLock]:
    # Short waits for the lock, so each refused try fails fast and the next one follows.
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "timeout", 0.2)
    monkeypatch.setattr(actions, "OUTCOME_RETRY_S", (0.1, 0.1, 0.1))
    connection.close()
    lock = StoreLock()
    yield lock
    lock.drop()


def outcomes() -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(kind="outcome").order_by("seq"))


@pytest.mark.embedded_only  # the lock is SQLite's
async def test_an_outcome_the_database_refuses_at_first_is_written_by_a_retry(
    hung: Hung,  # noqa: F811
    store_lock: StoreLock,
) -> None:
    async def caller(*args: Any, **kwargs: Any) -> CommandAnswer:
        answer = await call_bridge(*args, **kwargs)
        store_lock.take()  # the gateway acted; now the store refuses writes

        threading.Timer(0.25, store_lock.drop).start()
        return answer

    outcome = await actions.perform(
        "force_clear",
        Target("sim", HUNG, hung.run_id),
        reason="retry test",
        actor=OPERATOR,
        caller=caller,
    )
    assert outcome.result == "success", outcome.detail
    done = await sync_to_async(outcomes)()
    assert [(o.intent_id, o.result) for o in done] == [(outcome.audit_id, "success")]
    assert (await sync_to_async(audit.verify)()).ok


@pytest.mark.embedded_only
async def test_an_outcome_refused_past_every_retry_answers_the_caller_and_is_marked_later(
    hung: Hung,  # noqa: F811
    store_lock: StoreLock,
) -> None:
    async def caller(*args: Any, **kwargs: Any) -> CommandAnswer:
        answer = await call_bridge(*args, **kwargs)
        store_lock.take()
        return answer

    outcome = await actions.perform(
        "force_clear",
        Target("sim", HUNG, hung.run_id),
        reason="refused test",
        actor=OPERATOR,
        caller=caller,
    )
    # Not a 500: the caller hears what the gateway did, and that the audit lacks it.
    assert outcome.result == "success"
    assert "could not be written to the audit log" in outcome.detail
    store_lock.drop()
    assert await sync_to_async(outcomes)() == []
    later = timezone.now() + timedelta(minutes=5)
    assert await sync_to_async(action_outcomes.mark_interrupted)(later) == 1
    done = await sync_to_async(outcomes)()
    assert [(o.intent_id, o.result) for o in done] == [(outcome.audit_id, "interrupted")]
    assert (await sync_to_async(audit.verify)()).ok


def intent(**fields: Any) -> AuditEntry:
    return audit.append(
        kind="intent",
        actor="operator",
        actor_kind="user",
        action="force_clear",
        gateway="gw",
        session_key="agent:main:x",
        expect_run_id="r1",
        reason="why",
        **fields,
    )


def test_an_intent_past_its_deadline_is_marked_interrupted_once_and_audited() -> None:
    first = intent()
    later = timezone.now() + timedelta(minutes=5)
    assert action_outcomes.mark_interrupted(later) == 1
    assert action_outcomes.mark_interrupted(later) == 0  # never twice
    done = AuditEntry.objects.get(kind="outcome")
    assert done.intent_id == first.pk and done.result == "interrupted"
    assert "unknown" in done.detail and done.actor == "operator"
    assert audit.verify().ok


def test_an_intent_still_within_its_deadline_is_left_running() -> None:
    intent()
    assert action_outcomes.mark_interrupted() == 0
    assert not AuditEntry.objects.filter(kind="outcome").exists()


def test_a_retry_of_an_interrupted_attempt_gets_interrupted_not_still_running() -> None:
    first = intent(once_key="key-1|gw|agent:main:x")
    assert actions.first_outcome(first.pk).result == "pending"
    # As if the attempt had started long ago: the retry's look marks it.
    cutoff = action_outcomes.interrupted_before(timezone.now())
    stale = timezone.now() + (timezone.now() - cutoff) + timedelta(seconds=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(action_outcomes.timezone, "now", lambda: stale)
        answer = actions.first_outcome(first.pk)
    assert answer.result == "interrupted" and answer.repeated
    assert AuditEntry.objects.get(kind="outcome").intent_id == first.pk
