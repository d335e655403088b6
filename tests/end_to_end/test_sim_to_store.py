"""Simulated gateway → bridge → ingest → store, over real loopback sockets.

Nothing here is replaced by a double: the gateway is the simulated one on a
loopback port, the bridge speaks the protocol to it, the supervisor applies
what arrives through the one ingestor into the test database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import pytest
from asgiref.sync import sync_to_async

from adminpanel.bridges.supervisor import BridgeSupervisor
from adminpanel.detect import Thresholds
from adminpanel.ingest import Ingestor
from adminpanel.models import DispatchSkip, Flag, Run, Session, TimelineEvent
from simgateway.server import SimGateway
from tests.actions.support import eventually
from tests.actions.support import mirrored as mirrored_by_bridge
from tests.support.fixtures_sim import FAST, SimGatewayFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("quick_supervisor")]

THRESHOLDS = Thresholds(
    stuck_after_s=0.6,
    terminal_held_after_s=0.3,
    waiter_unbounded_after_s=0.3,
    store_mismatch_after_s=0.3,
    skip_burst_count=3,
    alternating_min_failures=2,
)
HUNG = "agent:main:telegram:direct:hung"
LEAK = "agent:main:whatsapp:direct:leak"
FINE = "agent:support:slack:direct:fine"


def mirrored(gw: SimGateway, name: str = "sim") -> AbstractAsyncContextManager[BridgeSupervisor]:
    return mirrored_by_bridge(gw, name, ingestor=Ingestor(thresholds=THRESHOLDS))


@sync_to_async
def active_flags(key: str) -> set[str]:
    return set(
        Flag.objects.filter(session__session_key=key, cleared_at__isnull=True).values_list(
            "code", flat=True
        )
    )


def flagged(key: str, *codes: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return set(codes) <= await active_flags(key)

    return check


@sync_to_async
def store_locks(gateway: str) -> dict[str, str]:
    rows = Session.objects.filter(gateway__name=gateway, locked=True)
    return dict(rows.values_list("session_key", "run_id"))


def registry_locks(gw: SimGateway) -> dict[str, str]:
    return {e["sessionKey"]: e["runId"] for e in gw.registry.snapshot()["entries"]}


def store_matches(gw: SimGateway, gateway: str = "sim") -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await store_locks(gateway) == registry_locks(gw)

    return check


@sync_to_async
def timeline_seqs(gateway: str, boot_id: str) -> list[int]:
    rows = TimelineEvent.objects.filter(gateway__name=gateway, boot_id=boot_id, seq__isnull=False)
    return sorted(rows.values_list("seq", flat=True))


async def test_a_hung_run_with_waiters_on_2026_5_28_is_flagged_and_other_sessions_are_not(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.5.28", **FAST)
    async with mirrored(gw):
        gw.send_inbound(HUNG, "please HANG now")
        gw.send_inbound(HUNG, "hello? anyone?")
        gw.send_inbound(HUNG, "third try")
        for n in range(3):
            gw.send_inbound(FINE, f"normal turn {n}")
        await eventually(flagged(HUNG, "no_progress", "unbounded_waiter"))
        await eventually(store_matches(gw))
        session = await Session.objects.aget(session_key=HUNG)
        assert session.waiter_count == 2
        assert await active_flags(FINE) == set()


async def test_an_aborted_wedged_turn_that_leaks_its_lock_is_flagged_terminal_but_held(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.5.28", **FAST)
    async with mirrored(gw):
        # WEDGE: the backend ignores the cancel; 2026.5.28 has no forced settle.
        gw.send_inbound(LEAK, "WEDGE here")
        await eventually(store_matches(gw))
        gw.abort(LEAK)
        await eventually(flagged(LEAK, "terminal_but_held", "store_disagrees"))
        session = await Session.objects.aget(session_key=LEAK)
        assert (session.locked, session.result) == (True, "aborted")


async def test_the_alternating_drain_failure_on_2026_5_3_is_flagged_and_ledgered(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.5.3", **FAST)
    key = "agent:test:main"
    async with mirrored(gw):
        for n in range(6):
            gw.send_inbound(key, f"sequential {n}")
            await eventually(store_matches(gw))
            await asyncio.sleep(0.2)  # the turn finishes before the next message
        await eventually(flagged(key, "alternating_error"))
        failures = await DispatchSkip.objects.filter(kind="drain_failed").acount()
        assert failures >= 2


async def test_the_fixed_builds_forced_settle_releases_the_lock_and_the_flag_clears(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.9", terminal_settle_s=1.5, **FAST)
    async with mirrored(gw):
        # WEDGE: the backend ignores the cancel, so the owner never resumes to clear.
        gw.send_inbound(LEAK, "WEDGE here")
        await eventually(store_matches(gw))
        gw.abort(LEAK)
        await eventually(flagged(LEAK, "terminal_but_held"))
        await eventually(lambda: _cleared(LEAK))
        run = await Run.objects.aget(session__session_key=LEAK)
        assert run.release_how == "forced_settle"


async def _cleared(key: str) -> bool:
    return not await active_flags(key) and not (await store_locks("sim")).get(key)


async def test_killing_the_gateway_mid_stream_and_restarting_it_leaves_no_phantom_lock(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.5.28", **FAST)
    async with mirrored(gw) as supervisor:
        for n in range(5):
            gw.send_inbound(f"agent:main:telegram:direct:u{n}", "HANG forever")
        await eventually(store_matches(gw))
        old_boot = gw.registry.boot_id
        await gw.kill()

        restarted = await sim_gateway(profile="2026.5.28", port=gw.port, **FAST)
        restarted.send_inbound(FINE, "after the restart")
        restarted.send_inbound(HUNG, "HANG again")
        await eventually(store_matches(restarted))
        await eventually(lambda: _seqs_complete(restarted.registry.boot_id, restarted.registry.seq))
        assert supervisor.bridges[0].state.reconnects >= 1

    lost = await sync_to_async(list)(
        Run.objects.filter(boot_id=old_boot).values_list("release_how", flat=True)
    )
    assert lost == ["restart"] * 5
    old = await timeline_seqs("sim", old_boot)
    assert old == list(range(old[0], old[0] + len(old))), "no gap or duplicate in the old boot"


async def _seqs_complete(boot_id: str, last_seq: int) -> bool:
    seqs = await timeline_seqs("sim", boot_id)
    return bool(seqs) and seqs == list(range(seqs[0], last_seq + 1))


async def test_a_bridge_restart_while_the_gateway_runs_loses_and_duplicates_nothing(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.5.28", **FAST)
    async with mirrored(gw):
        gw.send_inbound(HUNG, "WEDGE one")
        await eventually(store_matches(gw))
    # Runboard is down while the gateway changes: a lock appears, another leaks.
    gw.send_inbound(LEAK, "HANG two")
    gw.abort(HUNG)
    gw.send_inbound(FINE, "meanwhile")
    async with mirrored(gw):
        await eventually(store_matches(gw))
        await eventually(flagged(HUNG, "terminal_but_held"))
        seqs = await timeline_seqs("sim", gw.registry.boot_id)
        assert len(seqs) == len(set(seqs))


async def test_hostile_duplicated_and_reordered_frames_are_rejected_and_the_stream_goes_on(
    sim_gateway: SimGatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    gw = await sim_gateway(
        profile="2026.5.28", garbage_rate=0.3, duplicate_rate=0.3, reorder_window=3, **FAST
    )
    async with mirrored(gw):
        for n in range(8):
            gw.send_inbound(f"agent:main:telegram:direct:h{n}", "HANG" if n % 2 else "fine")
        await eventually(store_matches(gw))
        await eventually(lambda: _seqs_complete(gw.registry.boot_id, gw.registry.seq))
    rejected = [r for r in caplog.records if "rejected" in str(r.msg)]
    assert rejected, "malformed frames are logged with a reason"
