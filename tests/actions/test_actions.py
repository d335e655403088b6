"""Operator actions through the real path: action service → channel layer → the
gateway's bridge → the simulated gateway over loopback, audited in the store."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from adminpanel import actions
from adminpanel.actions import ActionRefused, Actor, Target
from adminpanel.audit import chain as audit
from adminpanel.models import AuditEntry, Gateway, Session, Waiter
from gateway_bridge.scopes import ACCESS_SCOPES
from tests.actions.conftest import Hung
from tests.actions.support import HUNG, eventually, held_by, hung_run, mirrored
from tests.support.fixtures_sim import FAST, SimGatewayFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("quick_supervisor")]

OPERATOR = Actor("operator")


@sync_to_async
def entries() -> list[AuditEntry]:
    return list(AuditEntry.objects.order_by("seq"))


async def only_attempt() -> tuple[AuditEntry, AuditEntry]:
    rows = await entries()
    assert [r.kind for r in rows] == ["intent", "outcome"], rows
    intent, outcome = rows
    assert outcome.intent_id == intent.pk
    return intent, outcome


async def test_force_clear_releases_the_hung_lock_and_records_one_complete_attempt(
    hung: Hung,
) -> None:
    run_id = hung.run_id
    outcome = await actions.perform(
        "force_clear",
        Target("sim", HUNG, run_id),
        reason="user reported no answer",
        actor=OPERATOR,
        request_id="req-1",
        client_addr="127.0.0.1",
    )
    assert outcome.result == "success", outcome.detail

    async def released() -> bool:
        return not await held_by(HUNG)

    await eventually(released)
    intent, done = await only_attempt()
    assert intent.actor == "operator" and intent.action == "force_clear"
    assert intent.reason == "user reported no answer"
    assert intent.state_before["run_id"] == run_id and intent.state_before["locked"]
    assert intent.planned_calls[0]["method"] == "runboard.registry.forceClear"
    assert intent.request_id == "req-1" and intent.client_addr == "127.0.0.1"
    assert done.result == "success" and done.duration_ms is not None
    assert done.state_after["locked"] is False  # the release reached the store first
    assert done.calls[0]["command"] == "force_clear" and done.calls[0]["answer"]["cleared"]
    assert (await sync_to_async(audit.verify)()).ok


async def test_a_run_that_no_longer_holds_the_lock_is_a_conflict_and_nothing_is_sent(
    hung: Hung,
) -> None:
    run_id = hung.run_id
    outcome = await actions.perform(
        "force_clear", Target("sim", HUNG, "run-the-operator-saw-earlier"),
        reason="stale page", actor=OPERATOR,
    )  # fmt: skip
    assert outcome.result == "conflict"
    assert run_id in outcome.detail and "Nothing was done" in outcome.detail
    assert await held_by(HUNG) == run_id  # still held: nothing was sent
    intent, done = await only_attempt()
    assert done.result == "conflict" and done.calls == [] and intent.planned_calls == []


async def test_a_double_submit_makes_one_attempt_and_both_see_its_outcome(
    hung: Hung,
) -> None:
    run_id = hung.run_id
    target = Target("sim", HUNG, run_id)
    first, second = await asyncio.gather(
        *(
            actions.perform(
                "force_clear", target, reason="twice", actor=OPERATOR, once_key="form-1"
            )
            for _ in range(2)
        )
    )
    assert first.audit_id == second.audit_id
    assert {first.result, second.result} <= {"success", "pending"}
    assert first.repeated != second.repeated
    await only_attempt()


async def test_a_gateway_that_is_down_answers_at_once_with_an_error_entry(
    hung: Hung,
) -> None:
    gw, run_id, supervisor = hung.gw, hung.run_id, hung.supervisor
    await gw.stop()

    async def disconnected() -> bool:
        return supervisor.bridge("sim").state.status != "connected"

    await eventually(disconnected)
    outcome = await actions.perform(
        "force_clear", Target("sim", HUNG, run_id), reason="gateway down", actor=OPERATOR
    )
    assert outcome.result == "error"
    assert "not connected" in outcome.detail
    _, done = await only_attempt()
    assert done.result == "error"
    assert isinstance(done.duration_ms, int) and done.duration_ms >= 0


async def test_a_slow_gateway_is_reported_within_the_deadline_and_not_retried(
    hung: Hung,
) -> None:
    gw, run_id = hung.gw, hung.run_id
    gw.answer_delays_s["runboard.registry.forceClear"] = 5.0
    outcome = await actions.perform(
        "force_clear", Target("sim", HUNG, run_id), reason="slow", actor=OPERATOR,
        timeout_s=0.5,
    )  # fmt: skip
    assert outcome.result == "error"
    assert "may still act" in outcome.detail
    _, done = await only_attempt()
    assert done.result == "error" and len(done.calls) == 1


async def test_no_bridge_for_the_gateway_is_an_error_after_the_deadline(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.9", **FAST)
    async with mirrored(gw):
        run_id = await hung_run(gw)
    outcome = await actions.perform(
        "force_clear", Target("sim", HUNG, run_id), reason="no bridge", actor=OPERATOR,
        timeout_s=0.3,
    )  # fmt: skip
    assert outcome.result == "error" and "no answer from the bridge" in outcome.detail
    await only_attempt()


async def test_abort_names_the_run_and_only_that_run_is_aborted(
    hung: Hung,
) -> None:
    run_id = hung.run_id
    outcome = await actions.perform(
        "abort", Target("sim", HUNG, run_id), reason="user asked", actor=OPERATOR
    )
    assert outcome.result == "success", outcome.detail
    assert outcome.calls[0]["answer"]["run_ids"] == [run_id]
    _, done = await only_attempt()
    assert done.result == "success"


@sync_to_async
def lost_waiter(key: str, text: str) -> None:
    """A message the gateway dropped while it waited (as a timed-out visible wait does)."""
    session = Session.objects.get(session_key=key)
    Waiter.objects.create(
        session=session, boot_id="b", waiter_id="w-lost", since=session.updated_at,
        preview=text[:40], text=text, resolved_at=session.updated_at, outcome="timed_out",
    )  # fmt: skip


async def test_clear_and_requeue_clears_then_sends_each_lost_message_once(
    hung: Hung,
) -> None:
    gw, run_id = hung.gw, hung.run_id
    await lost_waiter(HUNG, "where is my answer?")
    outcome = await actions.perform(
        "clear_and_requeue", Target("sim", HUNG, run_id), reason="stuck", actor=OPERATOR
    )
    assert outcome.result == "success", outcome.detail
    assert "1 message(s) requeued" in outcome.detail

    async def answered() -> bool:
        session = gw.registry.session(HUNG)
        return session is not None and any("where is my answer" in str(m) for m in session.history)

    await eventually(answered)
    again = await actions.perform(
        "requeue", Target("sim", HUNG, ""), reason="once more", actor=OPERATOR
    )
    assert again.result == "noop"  # already requeued: not offered, not sent again
    rows = await entries()
    assert [r.result for r in rows if r.kind == "outcome"] == ["success", "noop"]


async def test_bad_requests_are_refused_with_a_message_and_not_recorded() -> None:
    with pytest.raises(ActionRefused, match="reason is required"):
        await actions.perform("force_clear", Target("sim", HUNG, "r"), reason=" ", actor=OPERATOR)
    with pytest.raises(ActionRefused, match="expect_run_id"):
        await actions.perform("force_clear", Target("sim", HUNG, ""), reason="x", actor=OPERATOR)
    with pytest.raises(ActionRefused, match="unknown action"):
        await actions.perform("delete", Target("sim", HUNG, "r"), reason="x", actor=OPERATOR)
    with pytest.raises(ActionRefused, match="has no session"):
        await actions.perform("force_clear", Target("sim", HUNG, "r"), reason="x", actor=OPERATOR)
    assert await entries() == []


async def test_in_observer_mode_force_clear_falls_back_to_chat_abort_and_says_so(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.9", plugin=False, **FAST)
    async with mirrored(gw):
        run_id = await hung_run(gw)
        outcome = await actions.perform(
            "force_clear", Target("sim", HUNG, run_id), reason="observer", actor=OPERATOR
        )
        assert outcome.result == "success", outcome.detail
        assert "observer mode: by chat.abort" in outcome.detail

        async def released() -> bool:
            return not await held_by(HUNG)

        await eventually(released)
    intent, done = await only_attempt()
    assert intent.planned_calls[0]["method"] == "chat.abort"
    assert done.calls[0]["answer"]["fallback"] == "chat.abort"


async def test_an_action_the_granted_scopes_rule_out_is_refused_audited_and_never_sent(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.9", **FAST)
    # The gateway's access level is "act": its bridge asks for read and write, not admin.
    async with mirrored(gw, scopes=ACCESS_SCOPES["act"]):
        run_id = await hung_run(gw)

        async def granted_recorded() -> bool:
            g = await sync_to_async(Gateway.objects.get)(name="sim")
            return g.granted_scopes == ["operator.read", "operator.write"]

        await eventually(granted_recorded)
        target = Target("sim", HUNG, run_id)
        preview = await sync_to_async(actions.preview)("force_clear", target)
        assert "operator.admin" in preview.warning
        outcome = await actions.perform(
            "force_clear", target, reason="user reported no answer", actor=OPERATOR
        )
        assert outcome.result == "error"
        assert "did not grant operator.admin" in outcome.detail
        assert "Nothing was sent" in outcome.detail
        assert await held_by(HUNG) == run_id  # the gateway was never asked
        intent, done = await only_attempt()
        assert intent.planned_calls == [] and done.calls == [] and done.result == "error"
