"""Users' message texts kept for requeue: blanked once requeued, or past their days.

Requeue goes the real way (the action service, the bridge, a simulated gateway on
loopback); prune then finds the requeued messages by the keys requeue gave them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.utils import timezone

from adminpanel import actions, retention
from adminpanel.actions import Actor, Target
from adminpanel.models import DispatchSkip, Session, Waiter
from tests.actions.support import HUNG, hung_run, mirrored
from tests.retention.support import DAY, NOW, make_session
from tests.support.fixtures_sim import FAST, SimGatewayFactory

ROOT = Path(__file__).resolve().parents[2]


def waiter(session: Session, waiter_id: str, since: datetime, text: str, **fields: str) -> Waiter:
    return Waiter.objects.create(
        session=session, boot_id="b", waiter_id=waiter_id, since=since, preview=text[:20],
        text=text, resolved_at=since, outcome=fields.pop("outcome", "timed_out"), **fields,
    )  # fmt: skip


def skip(session: Session, at: datetime, text: str, message_id: str = "") -> DispatchSkip:
    return DispatchSkip.objects.create(
        gateway=session.gateway, session=session, kind="skip", reason="active-run", at=at,
        message_id=message_id, preview=text[:20], text=text,
    )  # fmt: skip


def texts() -> dict[str, str]:
    found = {f"waiter {w}": t for w, t in Waiter.objects.values_list("waiter_id", "text")}
    for message_id, text in DispatchSkip.objects.values_list("message_id", "text"):
        found[f"skip {message_id}"] = text
    return found


@pytest.mark.django_db
def test_texts_older_than_the_text_days_are_blanked_and_younger_ones_stay() -> None:
    session = make_session()
    waiter(session, "old", NOW - 8 * DAY, "my address is …")
    waiter(session, "young", NOW - 6 * DAY, "still needed")
    skip(session, NOW - 9 * DAY, "old skipped text", "m-old")
    skip(session, NOW - 1 * DAY, "young skipped text", "m-young")

    dropped = retention.drop_message_texts(NOW, days=7, batch=100)

    assert (dropped.requeued, dropped.aged) == (0, 2)
    assert texts() == {
        "waiter old": "", "waiter young": "still needed",
        "skip m-old": "", "skip m-young": "young skipped text",
    }  # fmt: skip
    # The rows stay, with the preview the pages show.
    assert Waiter.objects.get(waiter_id="old").preview == "my address is …"


@pytest.mark.django_db
def test_old_texts_go_in_batches_and_a_dry_run_only_counts_them() -> None:
    session = make_session()
    for n in range(5):
        waiter(session, f"w{n}", NOW - 10 * DAY, f"text {n}")

    counted = retention.drop_message_texts(NOW, days=7, batch=2, dry_run=True)
    assert counted.aged == 5 and set(texts().values()) != {""}
    pauses: list[float] = []
    dropped = retention.drop_message_texts(NOW, days=7, batch=2, pause_s=0.5, sleep=pauses.append)

    assert dropped.aged == 5 and set(texts().values()) == {""}
    assert pauses == [0.5, 0.5]  # after the two full batches, not after the last one


@pytest.fixture
async def hung_session(
    sim_gateway: SimGatewayFactory, quick_supervisor: object
) -> AsyncIterator[str]:
    """A 2026.9 gateway mirrored in this test's loop with ``HUNG``'s turn hung: its run id."""
    gw = await sim_gateway(profile="2026.9", **FAST)
    async with mirrored(gw):
        yield await hung_run(gw)
    # The worker thread's connection, so PostgreSQL can drop the test database after the run.
    await sync_to_async(connections.close_all)()


@sync_to_async
def lost_messages() -> None:
    """Two messages the gateway dropped on the hung session (a waiter and a skip of one
    message, and another skip), and a lost message on another session."""
    session = Session.objects.get(session_key=HUNG)
    now = timezone.now()
    waiter(session, "w-lost", now, "where is my answer?", message_id="m-1")
    skip(session, now, "where is my answer?", "m-1")
    skip(session, now, "and this one?", "m-2")
    other = make_session("agent:main:telegram:direct:someone-else")
    skip(other, now, "not requeued", "m-3")


@pytest.mark.django_db(transaction=True)
async def test_texts_of_requeued_messages_are_blanked_and_other_texts_stay(
    hung_session: str,
) -> None:
    await lost_messages()
    outcome = await actions.perform(
        "clear_and_requeue", Target("sim", HUNG, hung_session), reason="stuck",
        actor=Actor("operator"),
    )  # fmt: skip
    assert outcome.result == "success", outcome.detail
    assert "2 message(s) requeued" in outcome.detail

    dropped = await sync_to_async(retention.drop_message_texts)(timezone.now(), 7, 100)

    assert dropped.requeued == 3 and dropped.aged == 0
    # The gateway's own rows for the requeued messages (a new waiter behind the first
    # one) are not ours to judge: only the lost messages' rows are compared.
    wanted = {"waiter w-lost": "", "skip m-1": "", "skip m-2": "", "skip m-3": "not requeued"}
    found = await sync_to_async(texts)()
    assert {row: found.get(row) for row in wanted} == wanted


@pytest.mark.parametrize("value", ["0", "seven"])
def test_a_bad_message_text_days_stops_the_process_naming_the_variable(
    tmp_path: Path, value: str
) -> None:
    env = {
        **os.environ, "RUNBOARD_VAR_DIR": str(tmp_path), "RUNBOARD_DEBUG": "1",
        "RUNBOARD_MESSAGE_TEXT_DAYS": value,
    }  # fmt: skip
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert f"RUNBOARD_MESSAGE_TEXT_DAYS={value!r}" in result.stderr
    assert "Traceback" not in result.stderr
