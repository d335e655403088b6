"""The API's action flow against a real OpenClaw gateway (openclaw@2026.9.6 with Runboard's
companion plugin, the fake model server behind it): a user's turn hangs, the API lists it,
clears and requeues it by its run id, the user's held message is answered, and the audit
shows the attempt. Marked ``openclaw`` (select with ``-m openclaw``)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from adminpanel.bridges.supervisor import BridgeSupervisor, GatewayTarget
from adminpanel.models import Gateway
from gateway_bridge.client import GatewayClient
from gateway_bridge.errors import GatewayRejected
from tests.api.support import aget, apost, role_tokens
from tests.openclaw.fake_model import FakeModelServer
from tests.openclaw.gateway import OpenClawGateway
from tests.openclaw.install import layout, missing_parts

pytestmark = [
    pytest.mark.openclaw,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

RELEASE = "2026.9.6"
GATEWAY = "openclaw"
# Generous upper bounds only: a real turn takes seconds on a busy machine.
TURN_TIMEOUT_S = 120.0
SYNC_TIMEOUT_S = 60.0


@pytest.fixture(autouse=True)
def _real_gateway_settings(settings: Any) -> None:
    settings.RUNBOARD_DETECT_TICK_S = 0.1
    settings.RUNBOARD_BACKOFF_MAX_S = 1.0
    settings.RUNBOARD_CALL_TIMEOUT_S = 15.0
    settings.RUNBOARD_CONNECT_TIMEOUT_S = 15.0


@pytest.fixture(scope="module")
def real_gateway() -> Iterator[tuple[OpenClawGateway, FakeModelServer]]:
    """One real gateway for the module (it takes 15-30 s to become ready)."""
    missing = missing_parts(layout(), (RELEASE,))
    if missing:
        message = "needs " + ", ".join(missing) + "; run: python -m tests.openclaw.install"
        pytest.fail(message)  # never skipped: make test installs them
    model = FakeModelServer().start()
    gw = OpenClawGateway(RELEASE, model_base_url=model.base_url, plugin=True)
    try:
        gw.start()
        yield gw, model
    finally:
        gw.cleanup()
        model.stop()


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    """Poll until ``check`` holds; the timeout is a generous upper bound only."""
    try:
        async with asyncio.timeout(timeout_s):
            while not await check():  # noqa: ASYNC110 - nothing to await but the answer
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"not within {timeout_s:.0f} s: {what}") from None


@sync_to_async
def _booted() -> bool:
    return Gateway.objects.filter(name=GATEWAY).exclude(boot_id="").exists()


@contextlib.asynccontextmanager
async def mirrored(gw: OpenClawGateway) -> AsyncIterator[BridgeSupervisor]:
    """The real bridge in this test's loop, mirroring the gateway into the test database."""
    supervisor = BridgeSupervisor([GatewayTarget(GATEWAY, gw.url, gw.token)])
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.run(stop))

    async def synced() -> bool:
        return supervisor.bridge(GATEWAY).state.status == "connected" and await _booted()

    try:
        await eventually(synced, SYNC_TIMEOUT_S, "the bridge mirrors the gateway")
        yield supervisor
    finally:
        stop.set()
        await task


@contextlib.asynccontextmanager
async def user_client(gw: OpenClawGateway) -> AsyncIterator[GatewayClient]:
    """Plays the users: chat.send and chat.history over an operator connection of its own."""
    client = GatewayClient(gw.url, gw.token, connect_timeout_s=30, call_timeout_s=30)
    await client.connect()
    try:
        yield client
    finally:
        await client.close()


def marked(text: str) -> str:
    """A message the fake model knows as the user's (tests/openclaw/fake_model.py)."""
    return f"{text} MSG-{uuid.uuid4().hex[:6]}"


async def send(client: GatewayClient, key: str, text: str) -> None:
    params = {"sessionKey": key, "message": text, "idempotencyKey": str(uuid.uuid4())}
    answer = await client.call("chat.send", params)
    assert isinstance(answer, dict) and answer.get("status") in ("started", "in_flight", "ok")


def text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


async def answered(client: GatewayClient, key: str, text: str) -> bool:
    """The user message carrying ``text`` is in chat.history with an assistant reply after it."""
    try:
        payload = await client.call("chat.history", {"sessionKey": key, "limit": 200})
    except GatewayRejected as exc:
        if "retry" in str(exc):  # "session history is rebuilding; retry shortly"
            return False
        raise
    history = [m for m in (payload or {}).get("messages") or [] if isinstance(m, dict)]
    for i, message in enumerate(history):
        if message.get("role") == "user" and text in text_of(message):
            return any(later.get("role") == "assistant" for later in history[i + 1 :])
    return False


async def test_a_hung_turn_is_listed_cleared_and_requeued_through_the_api_and_the_user_is_answered(
    real_gateway: tuple[OpenClawGateway, FakeModelServer],
) -> None:
    gw, model = real_gateway
    token = (await sync_to_async(role_tokens)())["operator"]
    api = AsyncClient()
    name = f"api-{uuid.uuid4().hex[:8]}"
    key = f"agent:main:telegram:direct:{name}"
    async with mirrored(gw), user_client(gw) as users:
        hang = marked("please HANG")
        await send(users, key, hang)

        async def reached_model() -> bool:
            return any(hang in text for text in model.texts())

        await eventually(reached_model, TURN_TIMEOUT_S, "the hanging turn reached the model")
        held = marked("are you there?")
        await send(users, key, held)
        listed: dict[str, Any] = {}

        async def listed_waiting() -> bool:
            response = await aget(api, "/api/v1/sessions", token, q=name)
            assert response.status_code == 200, response.content
            rows = response.json()["sessions"]
            listed.update(rows[0] if rows else {})
            return bool(rows and rows[0]["locked"] and rows[0]["waiters"] >= 1)

        await eventually(listed_waiting, TURN_TIMEOUT_S, "the API lists the held session")
        assert listed["gateway"] == GATEWAY and listed["run_id"]
        response = await apost(
            api,
            "/api/v1/actions/clear-and-requeue",
            token,
            {"gateway": GATEWAY, "session_key": key, "reason": "user got no answer",
             "expect_run_id": listed["run_id"]},
            **{"Idempotency-Key": f"ticket-{name}"},
        )  # fmt: skip
        assert response.status_code == 200, response.content
        result = response.json()
        assert result["result"] == "success", result["detail"]

        async def held_answered() -> bool:
            return await answered(users, key, held)

        await eventually(held_answered, TURN_TIMEOUT_S, "the held message is answered")
        audit = await aget(api, "/api/v1/audit", token, q=name)
    assert audit.status_code == 200
    (attempt,) = audit.json()["attempts"]
    assert attempt["audit_id"] == result["audit_id"]
    assert attempt["action"] == "clear_and_requeue" and attempt["result"] == "success"
    assert attempt["actor"] == "operator" and attempt["reason"] == "user got no answer"
    assert attempt["state_before"]["run_id"] == listed["run_id"]
    assert attempt["calls"][0]["command"] == "force_clear"
