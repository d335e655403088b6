"""The whole path: a force-clear through ``actions.perform`` against the simulated gateway
shows on the audit page, the session's timeline and the export, and the chain verifies."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import cast

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.http import StreamingHttpResponse
from django.test import AsyncClient

from adminpanel import actions
from adminpanel.actions import Actor, Target
from adminpanel.models import AuditEntry, Session
from tests.actions.support import HUNG, hung_run, mirrored
from tests.support.fixtures_sim import FAST, SimGatewayFactory
from tests.support.users import make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("quick_supervisor")]


async def text(client: AsyncClient, url: str) -> str:
    response = await client.get(url)
    assert response.status_code == 200, url
    if response.streaming:
        streamed = cast(StreamingHttpResponse, response)
        assert streamed.is_async  # served without buffering under ASGI
        parts = [part async for part in cast(AsyncIterator[bytes], streamed.streaming_content)]
        return b"".join(parts).decode()
    return response.content.decode()


async def test_a_force_clear_is_on_the_audit_page_the_timeline_and_the_export(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.9", **FAST)
    async with mirrored(gw):
        run_id = await hung_run(gw)
        outcome = await actions.perform(
            "force_clear",
            Target("sim", HUNG, run_id),
            reason="user got no answer for 5 min",
            actor=Actor("operator"),
            request_id="req-e2e",
            client_addr="127.0.0.1",
        )
    assert outcome.result == "success", outcome.detail
    session_pk = await sync_to_async(lambda: Session.objects.get(session_key=HUNG).pk)()
    client = AsyncClient()
    await client.aforce_login(await sync_to_async(make_user)("viewer", "pw"))

    page = await text(client, f"/audit/?attempt={outcome.audit_id}")
    row = page.split(f'id="attempt-{outcome.audit_id}"', 1)[1].split("</tr>", 1)[0]
    for expected in ("operator", "force-clear", "user got no answer for 5 min", "result-success",
                     "req-e2e", "127.0.0.1", f'href="/sessions/{session_pk}/"'):  # fmt: skip
        assert expected in row, expected

    detail = await text(client, f"/sessions/{session_pk}/")
    assert f'<a href="/audit/{outcome.audit_id}/">Force-clear by operator: ' in detail
    assert "user got no answer for 5 min → success" in detail

    entry = await text(client, f"/audit/{outcome.audit_id}/")
    assert "runboard.registry.forceClear" in entry and run_id in entry

    exported = json.loads(await text(client, "/audit/export.json?action=force_clear"))
    (record,) = exported["attempts"]
    assert record["audit_id"] == outcome.audit_id and record["result"] == "success"
    assert record["state_before"]["run_id"] == run_id and "locked" in record["state_after"]
    assert record["calls"][0]["answer"]["cleared"] is True
    head = await sync_to_async(lambda: AuditEntry.objects.order_by("-seq").first())()
    assert head is not None and record["outcome_hash"] == head.hash

    out = io.StringIO()
    await sync_to_async(call_command)("verify_audit", "--expect-head", head.hash, stdout=out)
    assert out.getvalue().startswith("audit chain intact: 2 entries, head #2 ")
