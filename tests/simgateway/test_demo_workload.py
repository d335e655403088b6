"""The demo's workload, mirrored by the real bridge and ingest: every flag kind, and skips.

The three gateways ``make demo`` starts (sim-eu 2026.5.28, sim-us 2026.5.3,
sim-next 2026.9) run on loopback with the demo's own workload and seed; the
bridges' supervisor mirrors them into the test database as in production.
Only the stuck and unbounded-waiter thresholds are shortened (settings), so
the test does not wait two minutes for a hung run to count as stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from adminpanel.bridges.supervisor import BridgeSupervisor, GatewayTarget
from adminpanel.detect import RULE_CODES
from adminpanel.management.commands.demo import SIM_GATEWAYS, SIM_TOKEN
from adminpanel.models import DispatchSkip, Flag
from simgateway.cli import workload_for
from tests.support.fixtures_sim import SimGatewayFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# The demo stages everything within its first minute; this is only an upper bound.
DEADLINE_S = 120.0
DEMO_OPTIONS = {"workload": "demo", "seed": 7, "rate": 0.5, "sessions": 12}


@pytest.fixture
def demo_thresholds(quick_supervisor: Any) -> Any:
    quick_supervisor.RUNBOARD_STUCK_AFTER_S = 3.0
    quick_supervisor.RUNBOARD_WAITER_UNBOUNDED_AFTER_S = 5.0
    quick_supervisor.RUNBOARD_NOTIFY_WEBHOOK_URL = ""
    return quick_supervisor


@contextlib.asynccontextmanager
async def demo_gateways(sim_gateway: SimGatewayFactory) -> AsyncIterator[list[GatewayTarget]]:
    """The demo's gateways, each driven by the demo's workload, as ``manage.py demo`` runs them."""
    stop = asyncio.Event()
    targets, tasks = [], []
    for index, (name, profile) in enumerate(SIM_GATEWAYS):
        workload = workload_for(DEMO_OPTIONS, profile, index)
        assert workload is not None
        gw = await sim_gateway(
            name=name, profile=profile, token=SIM_TOKEN, seed=7 + index,
            turn_median_s=workload.turn_median_s,
        )  # fmt: skip
        targets.append(GatewayTarget(name, gw.url, SIM_TOKEN))
        tasks.append(asyncio.create_task(workload.run(gw, stop)))
    try:
        yield targets
    finally:
        stop.set()
        await asyncio.gather(*tasks)


@sync_to_async
def flag_codes() -> dict[str, set[str]]:
    """Every flag code raised so far (cleared or not), by gateway."""
    found: dict[str, set[str]] = {}
    for gateway, code in Flag.objects.values_list("session__gateway__name", "code"):
        found.setdefault(gateway, set()).add(code)
    return found


@sync_to_async
def skips_by_gateway() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    rows = DispatchSkip.objects.filter(kind="skip").values_list("gateway__name", "reason")
    for gateway, reason in rows:
        found.setdefault(gateway, set()).add(reason)
    return found


def every_code(found: dict[str, set[str]]) -> set[str]:
    return set().union(*found.values()) if found else set()


async def test_the_demo_workload_raises_every_flag_kind_and_records_dispatch_skips(
    sim_gateway: SimGatewayFactory, demo_thresholds: Any
) -> None:
    async with demo_gateways(sim_gateway) as targets:
        supervisor = BridgeSupervisor(targets)
        stop = asyncio.Event()
        running = asyncio.create_task(supervisor.run(stop))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_S
        codes: dict[str, set[str]] = {}
        skips: dict[str, set[str]] = {}
        try:
            while loop.time() < deadline:
                codes, skips = await flag_codes(), await skips_by_gateway()
                if every_code(codes) >= set(RULE_CODES) and {"sim-eu", "sim-next"} <= set(skips):
                    break
                await asyncio.sleep(0.5)
        finally:
            stop.set()
            await running
    assert every_code(codes) >= set(RULE_CODES), codes
    # A heartbeat turn while the hung run holds the lock (2026.5.28), and a follow-up
    # whose bounded wait for that lock timed out (2026.9): both skipped as active-run.
    assert skips.get("sim-eu") == {"active-run"}, skips
    assert skips.get("sim-next") == {"active-run"}, skips
    assert {"no_progress", "unbounded_waiter", "skip_burst"} <= codes["sim-eu"]
    assert "alternating_error" in codes["sim-us"]
