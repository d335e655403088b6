"""Fixtures of the contract scenarios: ``target`` is one gateway (sim or real) in one mode."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from simgateway.server import SimGateway
from tests.contract.targets import (
    REAL_STUCK_AFTER_S,
    SIM_KNOBS,
    SIM_PLUGIN_OPTIONS,
    SIM_STUCK_AFTER_S,
    RealGatewayPool,
    Target,
    target_params,
)
from tests.support.fixtures_sim import SimGatewayFactory


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "openclaw: runs against a real OpenClaw gateway (select with -m openclaw)"
    )


@pytest.fixture(scope="module")
def real_gateways() -> Iterator[RealGatewayPool]:
    """Real gateways live for one test module: starting one takes 15-30 s."""
    pool = RealGatewayPool()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(autouse=True)
def _contract_settings(settings: Any) -> None:
    settings.RUNBOARD_DETECT_TICK_S = 0.05
    settings.RUNBOARD_BACKOFF_MAX_S = 1.0
    settings.RUNBOARD_CALL_TIMEOUT_S = 15.0
    settings.RUNBOARD_CONNECT_TIMEOUT_S = 15.0


@pytest.fixture(params=target_params())
async def target(
    request: pytest.FixtureRequest,
    sim_gateway: SimGatewayFactory,
    real_gateways: RealGatewayPool,
) -> AsyncIterator[Target]:
    kind, version, mode = request.param
    if kind == "sim":
        yield await _sim_target(sim_gateway, version, mode)
        return
    gw = await real_gateways.gateway(version, plugin=mode == "plugin")

    async def restart() -> None:
        await _to_thread(gw.restart)

    yield Target(
        label=f"openclaw-{version}",
        kind="openclaw",
        version=version,
        mode=mode,
        url=gw.url,
        token=gw.token,
        stuck_after_s=REAL_STUCK_AFTER_S,
        turn_timeout_s=120.0,
        restart=restart,
        model=real_gateways.model,
    )


async def _sim_target(sim_gateway: SimGatewayFactory, profile: str, mode: str) -> Target:
    token = "contract-token"
    # Observer mode: a stock gateway, without Runboard's registry methods.
    options: dict[str, Any] = {"profile": profile, "token": token, "plugin": mode == "plugin"}
    if mode == "plugin":
        options |= SIM_PLUGIN_OPTIONS
    holder: dict[str, SimGateway] = {"gw": await sim_gateway(**options, **SIM_KNOBS)}

    async def restart() -> None:
        port = holder["gw"].port
        await holder["gw"].stop()
        holder["gw"] = await sim_gateway(port=port, **options, **SIM_KNOBS)

    gw = holder["gw"]
    return Target(
        label=f"sim-{profile}",
        kind="sim",
        version=profile,
        mode=mode,
        url=gw.url,
        token=token,
        stuck_after_s=SIM_STUCK_AFTER_S,
        turn_timeout_s=10.0,
        restart=restart,
    )


async def _to_thread(fn: Any) -> None:
    import asyncio

    await asyncio.to_thread(fn)
