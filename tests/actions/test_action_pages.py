"""The action dialog and its result, through the app's own URLs, with each role.

The views are async and reach the gateway through the bridge running in the
test's loop (Django's AsyncClient calls the app in that loop).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import AsyncClient

from adminpanel.models import AuditEntry, Session
from tests.actions.conftest import Hung
from tests.actions.support import HUNG, eventually, held_by, hung_run, mirrored, role_users
from tests.support.fixtures_sim import FAST, SimGatewayFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("quick_supervisor")]


@pytest.fixture
async def users() -> dict[str, User]:
    return await sync_to_async(role_users)()


async def client_for(user: User | None, **kwargs: Any) -> AsyncClient:
    client = AsyncClient(**kwargs)
    if user is not None:
        await client.aforce_login(user)
    return client


@sync_to_async
def session_pk(key: str) -> int:
    return Session.objects.get(session_key=key).pk


@sync_to_async
def attempts() -> list[tuple[str, str]]:
    return list(AuditEntry.objects.order_by("seq").values_list("kind", "result"))


async def test_the_dialog_lists_the_state_the_calls_and_asks_for_a_reason(
    hung: Hung, users: dict[str, User]
) -> None:
    run_id, pk = hung.run_id, hung.pk
    client = await client_for(users["operator"])
    page = await client.get(f"/sessions/{pk}/act/force-clear/?run={run_id}")
    assert page.status_code == 200
    html = page.content.decode()
    assert "runboard.registry.forceClear" in html and run_id in html
    assert 'name="reason"' in html and 'name="submission"' in html
    assert "csrfmiddlewaretoken" in html
    assert "may still be answering" in html  # it started moments ago


async def test_an_operator_clears_a_lock_with_a_reason_and_sees_the_result(
    hung: Hung, users: dict[str, User]
) -> None:
    run_id, pk = hung.run_id, hung.pk
    client = await client_for(users["operator"])
    form = {"reason": "user waited 10 min", "expect_run_id": run_id,
            "submission": str(uuid.uuid4())}  # fmt: skip
    answer = await client.post(f"/sessions/{pk}/act/force-clear/", form)
    assert answer.status_code == 200
    assert "success" in answer.content.decode()
    again = await client.post(f"/sessions/{pk}/act/force-clear/", form)  # double submit
    assert "the same submit again" in again.content.decode()

    async def released() -> bool:
        return not await held_by(HUNG)

    await eventually(released)
    assert await attempts() == [("intent", ""), ("outcome", "success")]


async def test_a_missing_reason_is_refused_with_a_message_and_nothing_is_done(
    hung: Hung, users: dict[str, User]
) -> None:
    run_id, pk = hung.run_id, hung.pk
    client = await client_for(users["operator"])
    form = {"reason": "  ", "expect_run_id": run_id, "submission": str(uuid.uuid4())}
    answer = await client.post(f"/sessions/{pk}/act/force-clear/", form)
    assert await held_by(HUNG) == run_id
    assert answer.status_code == 400
    assert "Say why" in answer.content.decode()
    assert await attempts() == []


async def test_a_stale_dialog_is_a_conflict_showing_the_new_owner(
    hung: Hung, users: dict[str, User]
) -> None:
    run_id, pk = hung.run_id, hung.pk
    client = await client_for(users["operator"])
    dialog = await client.get(f"/sessions/{pk}/act/clear-and-requeue/?run=an-older-run")
    assert "The lock changed since you looked" in dialog.content.decode()
    form = {"reason": "r", "expect_run_id": "an-older-run", "submission": str(uuid.uuid4())}
    answer = await client.post(f"/sessions/{pk}/act/clear-and-requeue/", form)
    assert await held_by(HUNG) == run_id
    html = answer.content.decode()
    assert "conflict" in html and run_id in html
    assert await attempts() == [("intent", ""), ("outcome", "conflict")]


async def test_viewers_and_users_without_a_role_may_not_act(
    hung: Hung, users: dict[str, User]
) -> None:
    run_id, pk = hung.run_id, hung.pk
    for name in ("viewer", "nobody"):
        client = await client_for(users[name])
        form = {"reason": "r", "expect_run_id": run_id, "submission": str(uuid.uuid4())}
        for slug in ("force-clear", "requeue", "abort", "clear-and-requeue"):
            assert (await client.get(f"/sessions/{pk}/act/{slug}/")).status_code == 403
            answer = await client.post(f"/sessions/{pk}/act/{slug}/", form)
            assert answer.status_code == 403
            assert "adminpanel." in answer.content.decode()
    anonymous = await client_for(None)
    answer = await anonymous.post(f"/sessions/{pk}/act/force-clear/", {})
    assert answer.status_code == 302 and "/login/" in answer["Location"]
    assert await held_by(HUNG) == run_id
    assert await attempts() == []


async def test_an_action_without_the_csrf_token_is_refused(
    hung: Hung, users: dict[str, User]
) -> None:
    run_id, pk = hung.run_id, hung.pk
    client = await client_for(users["operator"], enforce_csrf_checks=True)
    form = {"reason": "r", "expect_run_id": run_id, "submission": str(uuid.uuid4())}
    answer = await client.post(f"/sessions/{pk}/act/force-clear/", form)
    assert answer.status_code == 403
    page = await client.get(f"/sessions/{pk}/act/force-clear/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert token is not None
    answer = await client.post(
        f"/sessions/{pk}/act/force-clear/", {**form, "csrfmiddlewaretoken": token.group(1)}
    )
    assert answer.status_code == 200
    assert [r for _, r in await attempts()] == ["", "success"]


async def test_a_bulk_action_over_ten_sessions_needs_the_count_typed(
    sim_gateway: SimGatewayFactory, users: dict[str, User]
) -> None:
    gw = await sim_gateway(profile="2026.9", **FAST)
    keys = [f"agent:main:telegram:direct:bulk{n}" for n in range(12)]
    async with mirrored(gw):
        for key in keys:
            await hung_run(gw, key)
        client = await client_for(users["operator"])
        dialog = await client.get("/act/bulk/force-clear/?q=bulk")
        html = dialog.content.decode()
        assert dialog.status_code == 200 and "12 locked sessions" in html
        targets = re.search(r'name="targets" value="([^"]+)"', html)
        assert targets is not None
        form = {"reason": "mass outage", "targets": targets.group(1),
                "submission": str(uuid.uuid4())}  # fmt: skip
        refused = await client.post("/act/bulk/force-clear/?q=bulk", form)
        assert refused.status_code == 400 and "Type 12" in refused.content.decode()
        done = await client.post("/act/bulk/force-clear/?q=bulk", {**form, "confirm_count": 12})
        assert done.status_code == 200
        assert done.content.decode().count("result-success") == 12
        viewer = await client_for(users["viewer"])
        assert (await viewer.get("/act/bulk/force-clear/?q=bulk")).status_code == 403
    results = [r for kind, r in await attempts() if kind == "outcome"]
    assert results == ["success"] * 12


async def test_a_bulk_action_stops_starting_calls_once_the_gateway_is_too_slow(
    sim_gateway: SimGatewayFactory, users: dict[str, User], settings: Any
) -> None:
    settings.RUNBOARD_CALL_TIMEOUT_S = 1.0
    gw = await sim_gateway(profile="2026.9", **FAST)
    keys = [f"agent:main:telegram:direct:slow{n}" for n in range(6)]
    async with mirrored(gw):
        for key in keys:
            await hung_run(gw, key)
        gw.answer_delays_s["runboard.registry.forceClear"] = 5.0
        client = await client_for(users["operator"])
        dialog = (await client.get("/act/bulk/force-clear/?q=slow")).content.decode()
        targets = re.search(r'name="targets" value="([^"]+)"', dialog)
        assert targets is not None
        form = {"reason": "slow", "targets": targets.group(1), "submission": str(uuid.uuid4())}
        done = await client.post("/act/bulk/force-clear/?q=slow", form)
    html = done.content.decode()
    # The first calls (4 at a time) timed out; the rest were not started.
    assert html.count("result-error") == 6 and "Not attempted" in html
    rows = await attempts()
    assert len(rows) % 2 == 0 and all(r == "error" for k, r in rows if k == "outcome")
