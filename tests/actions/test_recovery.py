"""Automatic recovery policies: off by default, dry run, countdown, acting, rate limit.

The policies run inside a real ``BridgeSupervisor`` against the simulated
gateway; a hung turn is flagged ``no_progress`` within a fraction of a second
with the thresholds below.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.utils import timezone

from adminpanel.bridges import command_server, recovery
from adminpanel.models import AuditEntry, Flag, Gateway, RecoveryPolicy, Session
from tests.actions.support import HUNG, eventually, held_by, hung_run, mirrored
from tests.support.fixtures_sim import FAST, SimGatewayFactory
from tests.support.streams import Stream, ingest, locked_sessions
from tests.support.users import make_user

pytestmark = pytest.mark.django_db(transaction=True)

OTHER = "agent:main:telegram:direct:second"


@pytest.fixture(autouse=True)
def _quick(quick_supervisor: Any) -> None:
    quick_supervisor.RUNBOARD_STUCK_AFTER_S = 0.3


@sync_to_async
def policy(**fields: Any) -> RecoveryPolicy:
    gateway, _ = Gateway.objects.get_or_create(name="sim")
    defaults = {"trigger": "no_progress", "after_s": 1, "action": "force_clear"}
    return RecoveryPolicy.objects.create(name="unstick", gateway=gateway, **{**defaults, **fields})


@sync_to_async
def policy_attempts() -> list[tuple[str, str, bool]]:
    rows = AuditEntry.objects.filter(actor_kind="policy").order_by("seq")
    return [(r.kind, r.result, r.dry_run) for r in rows]


@sync_to_async
def countdown(key: str) -> tuple[Any, str]:
    session = Session.objects.get(session_key=key)
    return session.auto_action_at, session.auto_policy


@sync_to_async
def flagged(key: str, code: str = "no_progress") -> bool:
    return Flag.objects.filter(
        session__session_key=key, code=code, cleared_at__isnull=True
    ).exists()


async def no_bridge_call(gateway: str, command: str, params: Any, *, timeout_s: float) -> Any:
    raise AssertionError(f"recovery asked the bridge for {command}")


async def test_without_an_enabled_policy_nothing_is_done(sim_gateway: SimGatewayFactory) -> None:
    gw = await sim_gateway(profile="2026.9", **FAST)
    await policy(enabled=False, dry_run=False, after_s=0)
    async with mirrored(gw):
        run_id = await hung_run(gw)

        async def raised() -> bool:
            return await flagged(HUNG)

        await eventually(raised)  # the flag the policy is about is up
        noted: set[Any] = set()
        an_hour_later = timezone.now() + timedelta(hours=1)  # long past any threshold
        assert await recovery.tick(no_bridge_call, noted.update, now=an_hour_later) == []
        assert await held_by(HUNG) == run_id
        assert await countdown(HUNG) == (None, "")
    assert await policy_attempts() == []


async def test_recovery_acts_on_its_own_bridge_without_the_channel_layer(
    sim_gateway: SimGatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_listener(bridge: Any, stop: asyncio.Event) -> None:
        await stop.wait()

    # No command listener: only a direct call reaches the bridge.
    monkeypatch.setattr(command_server, "serve", no_listener)
    gw = await sim_gateway(profile="2026.9", **FAST)
    await policy(enabled=True, dry_run=False, after_s=0)
    async with mirrored(gw):
        await hung_run(gw)

        async def released_and_recorded() -> bool:
            return not await held_by(HUNG) and len(await policy_attempts()) == 2

        await eventually(released_and_recorded)
    assert await policy_attempts() == [("intent", "", False), ("outcome", "success", False)]


async def test_a_dry_run_shows_a_countdown_then_records_what_it_would_do_once(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.9", **FAST)
    await policy(enabled=True, dry_run=True, after_s=1)
    async with mirrored(gw):
        run_id = await hung_run(gw)

        async def counting_down() -> bool:
            return (await countdown(HUNG))[1] == "unstick"

        await eventually(counting_down)

        async def recorded() -> bool:
            return len(await policy_attempts()) == 2

        await eventually(recorded)
        await asyncio.sleep(0.5)  # more ticks: still one record for this run
        assert await held_by(HUNG) == run_id  # a dry run sends nothing
        assert await countdown(HUNG) == (None, "")
    assert await policy_attempts() == [("intent", "", True), ("outcome", "noop", True)]
    intent = await sync_to_async(AuditEntry.objects.get)(kind="intent")
    assert intent.actor == "unstick" and "automatic: policy unstick" in intent.reason


async def test_an_enabled_policy_clears_the_lock_under_its_own_name(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.9", **FAST)
    await policy(enabled=True, dry_run=False, after_s=1)
    async with mirrored(gw):
        await hung_run(gw)

        async def released_and_recorded() -> bool:
            return not await held_by(HUNG) and len(await policy_attempts()) == 2

        await eventually(released_and_recorded)
    assert await policy_attempts() == [("intent", "", False), ("outcome", "success", False)]


async def test_the_rate_limit_caps_actions_per_hour(sim_gateway: SimGatewayFactory) -> None:
    gw = await sim_gateway(profile="2026.9", **FAST)
    await policy(enabled=True, dry_run=False, after_s=0, max_actions_per_hour=1)
    async with mirrored(gw):
        await hung_run(gw, HUNG)
        await hung_run(gw, OTHER)

        async def one_released() -> bool:
            released = not await held_by(HUNG) or not await held_by(OTHER)
            return released and len(await policy_attempts()) == 2

        await eventually(one_released)
        await asyncio.sleep(1.0)
        assert bool(await held_by(HUNG)) != bool(await held_by(OTHER))  # the other still held
    assert [kind for kind, _, _ in await policy_attempts()] == ["intent", "outcome"]


def test_the_gateways_page_says_which_policies_are_on(transactional_db: None) -> None:
    gateway = Gateway.objects.create(name="sim")
    RecoveryPolicy.objects.create(
        name="unstick", gateway=gateway, enabled=True, trigger="terminal_but_held", after_s=30
    )
    RecoveryPolicy.objects.create(
        name="dormant", gateway=gateway, enabled=False, trigger="no_progress", after_s=600
    )
    client = Client()
    client.force_login(make_user("viewer"))
    html = client.get("/gateways/").content.decode()
    assert "unstick: force-clear and requeue after 30 s of" in html
    assert "(dry run)" in html and "dormant" not in html


def test_a_countdown_shows_on_the_row_until_the_policy_acts(transactional_db: None) -> None:
    ingest(locked_sessions(Stream("sim"), 1))
    due = timezone.now() + timedelta(seconds=42)
    Session.objects.update(auto_action_at=due, auto_policy="unstick")
    client = Client()
    client.force_login(make_user("viewer"))
    html = client.get("/").content.decode()
    assert "auto-recovery unstick in" in html
    left = re.search(r'<span class="left">(\d+) s</span>', html)
    assert left is not None and 0 <= int(left[1]) <= 42  # at most the time set
    assert 'class="countdown" data-due="' in html
