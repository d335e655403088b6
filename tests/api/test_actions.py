"""POST /api/v1/actions/* through the real path: Django's ASGI app (AsyncClient, in this
test's loop) → actions.perform → the channel layer → the gateway's bridge → the simulated
gateway over loopback, audited in the store."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from adminpanel.models import AuditEntry
from simgateway.server import SimGateway
from tests.actions.support import HUNG, eventually, held_by, hung_run, mirrored
from tests.api.support import aget, apost, role_tokens
from tests.support.fixtures_sim import FAST, SimGatewayFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("quick_supervisor")]


@pytest.fixture
async def operator() -> str:
    return (await sync_to_async(role_tokens)())["operator"]


@sync_to_async
def intents() -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(kind="intent").order_by("seq"))


@sync_to_async
def outcome_of(intent: AuditEntry) -> AuditEntry:
    return AuditEntry.objects.get(kind="outcome", intent_id=intent.pk)


def body(run_id: str, reason: str = "user reported no answer", **more: Any) -> dict[str, Any]:
    return {"gateway": "sim", "session_key": HUNG, "reason": reason, "expect_run_id": run_id} | more


def answered(gw: SimGateway, key: str, text: str) -> bool:
    """The user message carrying ``text`` is in the session's history with a reply after it."""
    session = gw.registry.session(key)
    history = session.history if session is not None else []
    for i, message in enumerate(history):
        if message.get("role") == "user" and text in str(message.get("content")):
            return any(later.get("role") == "assistant" for later in history[i + 1 :])
    return False


async def test_force_clear_through_the_api_releases_the_lock_and_audits_the_token_user(
    sim_gateway: SimGatewayFactory, operator: str
) -> None:
    gw = await sim_gateway(profile="2026.9", **FAST)
    async with mirrored(gw):
        run_id = await hung_run(gw)
        response = await apost(
            AsyncClient(), "/api/v1/actions/force-clear", operator, body(run_id),
            **{"X-Request-ID": "ticket-4711"},
        )  # fmt: skip
        assert response.status_code == 200, response.content
        answer = response.json()
        assert answer["result"] == "success" and run_id in answer["detail"]
        assert response["X-Request-ID"] == "ticket-4711"

        async def released() -> bool:
            return not await held_by(HUNG)

        await eventually(released)
    (intent,) = await intents()
    assert answer["audit_id"] == intent.pk
    assert intent.actor == "operator" and intent.actor_kind == "user"
    assert intent.request_id == "ticket-4711" and intent.client_addr == "127.0.0.1"
    assert intent.reason == "user reported no answer" and intent.expect_run_id == run_id
    assert (await outcome_of(intent)).result == "success"


async def test_clear_and_requeue_through_the_api_lets_the_users_next_message_be_answered(
    sim_gateway: SimGatewayFactory, operator: str
) -> None:
    gw = await sim_gateway(profile="2026.9", **FAST)
    client = AsyncClient()
    async with mirrored(gw):
        run_id = await hung_run(gw)
        listed = (await aget(client, "/api/v1/sessions", operator, q="hung")).json()
        (row,) = listed["sessions"]
        assert row["locked"] and row["run_id"] == run_id
        response = await apost(
            client, "/api/v1/actions/clear-and-requeue", operator, body(row["run_id"])
        )
        assert response.status_code == 200, response.content
        assert response.json()["result"] == "success"
        gw.send_inbound(HUNG, "hello again")

        async def next_answered() -> bool:
            return answered(gw, HUNG, "hello again")

        await eventually(next_answered)
        audit = (await aget(client, "/api/v1/audit", operator, q="hung")).json()
    (attempt,) = audit["attempts"]
    assert attempt["audit_id"] == response.json()["audit_id"]
    assert attempt["action"] == "clear_and_requeue" and attempt["result"] == "success"
    assert attempt["actor"] == "operator" and attempt["state_before"]["run_id"] == run_id


async def test_a_run_that_no_longer_holds_the_lock_is_a_409_and_nothing_is_sent(
    sim_gateway: SimGatewayFactory, operator: str
) -> None:
    gw = await sim_gateway(profile="2026.9", **FAST)
    async with mirrored(gw):
        run_id = await hung_run(gw)
        response = await apost(
            AsyncClient(), "/api/v1/actions/force-clear", operator, body("run-seen-earlier")
        )
        assert response.status_code == 409
        answer = response.json()
        assert answer["result"] == "conflict" and run_id in answer["detail"]
        assert answer["state"]["run_id"] == run_id
        assert await held_by(HUNG) == run_id
    (intent,) = await intents()
    assert (await outcome_of(intent)).calls == []


async def test_a_retried_post_with_the_same_idempotency_key_acts_once(
    sim_gateway: SimGatewayFactory, operator: str
) -> None:
    gw = await sim_gateway(profile="2026.9", **FAST)
    client = AsyncClient()
    async with mirrored(gw):
        run_id = await hung_run(gw)
        key = {"Idempotency-Key": "retry-me-1"}
        first = await apost(client, "/api/v1/actions/force-clear", operator, body(run_id), **key)
        again = await apost(client, "/api/v1/actions/force-clear", operator, body(run_id), **key)
    assert first.status_code == again.status_code == 200
    assert first.json()["audit_id"] == again.json()["audit_id"]
    assert not first.json()["repeated"] and again.json()["repeated"]
    assert again.json()["result"] == "success"
    assert len(await intents()) == 1


async def test_two_posts_at_once_with_one_idempotency_key_make_one_attempt(
    sim_gateway: SimGatewayFactory, operator: str
) -> None:
    gw = await sim_gateway(profile="2026.9", **FAST)
    async with mirrored(gw):
        run_id = await hung_run(gw)
        key = {"Idempotency-Key": "double-click"}
        responses = await asyncio.gather(
            *(
                apost(AsyncClient(), "/api/v1/actions/force-clear", operator, body(run_id), **key)
                for _ in range(2)
            )
        )
    assert len({r.json()["audit_id"] for r in responses}) == 1
    assert {r.status_code for r in responses} <= {200, 202}
    assert len(await intents()) == 1


async def test_without_an_idempotency_key_a_second_post_is_a_second_attempt(
    sim_gateway: SimGatewayFactory, operator: str
) -> None:
    gw = await sim_gateway(profile="2026.9", **FAST)
    client = AsyncClient()
    async with mirrored(gw):
        run_id = await hung_run(gw)
        first = await apost(client, "/api/v1/actions/force-clear", operator, body(run_id))
        assert first.status_code == 200

        async def released() -> bool:
            return not await held_by(HUNG)

        await eventually(released)
        again = await apost(client, "/api/v1/actions/force-clear", operator, body(run_id))
    assert again.status_code == 409 and "no run holds it now" in again.json()["detail"]
    assert len(await intents()) == 2


async def test_a_gateway_that_is_down_is_a_502_at_once(
    sim_gateway: SimGatewayFactory, operator: str
) -> None:
    gw = await sim_gateway(profile="2026.9", **FAST)
    async with mirrored(gw) as supervisor:
        run_id = await hung_run(gw)
        await gw.stop()

        async def disconnected() -> bool:
            return supervisor.bridge("sim").state.status != "connected"

        await eventually(disconnected)
        response = await apost(AsyncClient(), "/api/v1/actions/force-clear", operator, body(run_id))
    assert response.status_code == 502
    assert response.json()["result"] == "error" and "not connected" in response.json()["detail"]
    (intent,) = await intents()
    assert (await outcome_of(intent)).result == "error"


async def test_a_slow_gateway_is_a_502_within_the_call_timeout(
    sim_gateway: SimGatewayFactory, operator: str, settings: Any
) -> None:
    gw = await sim_gateway(profile="2026.9", **FAST)
    async with mirrored(gw):
        run_id = await hung_run(gw)
        settings.RUNBOARD_CALL_TIMEOUT_S = 0.5  # the action's budget; the bridge is connected
        gw.answer_delays_s["runboard.registry.forceClear"] = 5.0
        response = await apost(AsyncClient(), "/api/v1/actions/force-clear", operator, body(run_id))
    assert response.status_code == 502 and response.json()["result"] == "error"
    (intent,) = await intents()
    assert len((await outcome_of(intent)).calls) == 1  # not retried
