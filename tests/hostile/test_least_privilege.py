"""Least privilege against the simulated gateway (it enforces scopes like OpenClaw).

A bridge asks for its gateway's access level's scopes only: viewing works with
``operator.read`` alone, the plugin's force-clear needs ``operator.admin``,
requeue ``operator.write``; hello-ok's granted scopes reach the bridge's state.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway_bridge.connection import Bridge
from gateway_bridge.errors import GatewayRejected
from gateway_bridge.events import PhaseChanged, WaiterAdded
from gateway_bridge.scopes import ADMIN, READ, WRITE, missing_for_actions, scopes_for
from simgateway.server import SimGateway
from tests.gateway_bridge.scripted import until
from tests.gateway_bridge.support import ListSink, quick_bridge_settings, running
from tests.support.fixtures_sim import FAST, SimGatewayFactory

KEY = "agent:main:telegram:direct:alice"


def bridge_for(gw: SimGateway, sink: ListSink, access: str, **options: Any) -> Bridge:
    settings = quick_bridge_settings(**options)
    return Bridge(
        gateway="sim",
        url=gw.url,
        token="sim-token",
        sink=sink,
        scopes=scopes_for(access),
        **settings,
    )


async def hung_run(gw: SimGateway, sink: ListSink) -> str:
    await until(lambda: bool(sink.snapshots()))
    gw.send_inbound(KEY, "please HANG")
    await until(lambda: bool(sink.of_kind(PhaseChanged, session_key=KEY, phase="running")))
    gw.send_inbound(KEY, "second message")
    await until(lambda: bool(sink.of_kind(WaiterAdded, session_key=KEY)))
    return gw.registry.snapshot()["entries"][0]["runId"]  # type: ignore[no-any-return]


async def test_a_view_only_bridge_mirrors_the_registry_and_cannot_force_clear(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.5.28", **FAST)
    sink = ListSink()
    async with running(bridge_for(gw, sink, "view")) as bridge:
        run_id = await hung_run(gw, sink)
        assert bridge.state.scopes == (READ,)
        with pytest.raises(GatewayRejected, match=r"missing scope: operator\.admin"):
            await bridge.force_clear(KEY, run_id, "stuck")
        with pytest.raises(GatewayRejected, match=r"missing scope: operator\.write"):
            await bridge.requeue(KEY, [("hello again", "requeue-1")])

    assert bridge.state.mode == "plugin"
    assert gw.registry.snapshot()["entries"][0]["runId"] == run_id  # still held


async def test_an_act_bridge_requeues_but_the_plugins_force_clear_needs_admin(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.5.28", **FAST)
    sink = ListSink()
    async with running(bridge_for(gw, sink, "act")) as bridge:
        run_id = await hung_run(gw, sink)
        assert bridge.state.scopes == (READ, WRITE)
        [requeued] = await bridge.requeue(KEY, [("hello again", "requeue-1")])
        with pytest.raises(GatewayRejected, match=r"missing scope: operator\.admin"):
            await bridge.force_clear(KEY, run_id, "stuck")

    assert requeued.idempotency_key == "requeue-1"


async def test_an_admin_bridge_force_clears(sim_gateway: SimGatewayFactory) -> None:
    gw = await sim_gateway(profile="2026.5.28", **FAST)
    sink = ListSink()
    async with running(bridge_for(gw, sink, "admin")) as bridge:
        run_id = await hung_run(gw, sink)
        result = await bridge.force_clear(KEY, run_id, "stuck")

    assert result.cleared and bridge.state.scopes == (ADMIN, READ, WRITE)


def test_what_each_access_level_disables_in_each_mode() -> None:
    assert missing_for_actions("plugin", scopes_for("view")) == {
        "force_clear": (ADMIN,),
        "requeue": (WRITE,),
        "abort": (WRITE,),
        "clear_and_requeue": (ADMIN, WRITE),
    }
    assert missing_for_actions("plugin", scopes_for("act")) == {
        "force_clear": (ADMIN,),
        "clear_and_requeue": (ADMIN,),
    }
    assert missing_for_actions("observer", scopes_for("act")) == {}
    assert missing_for_actions("plugin", scopes_for("admin")) == {}
    assert missing_for_actions("unknown", [READ]) == missing_for_actions("plugin", [READ])
