"""Fixtures for the action tests: a hung session on a mirrored simulated gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from asgiref.sync import sync_to_async

from adminpanel.bridges.supervisor import BridgeSupervisor
from adminpanel.models import Session
from simgateway.server import SimGateway
from tests.actions.support import HUNG, hung_run, mirrored
from tests.support.fixtures_sim import FAST, SimGatewayFactory


@dataclass(frozen=True, slots=True)
class Hung:
    """The gateway, its running bridge, and the hung session's run id and primary key."""

    gw: SimGateway
    supervisor: BridgeSupervisor
    run_id: str
    pk: int


@pytest.fixture
async def hung(sim_gateway: SimGatewayFactory, quick_supervisor: object) -> AsyncIterator[Hung]:
    """A 2026.9 gateway mirrored by a bridge in this test's loop, with ``HUNG``'s turn hung."""
    gw = await sim_gateway(profile="2026.9", **FAST)
    async with mirrored(gw) as supervisor:
        run_id = await hung_run(gw)
        pk = await sync_to_async(lambda: Session.objects.get(session_key=HUNG).pk)()
        yield Hung(gw, supervisor, run_id, pk)
