"""The gateways the contract scenarios run against: the simulated one and real OpenClaw releases.

A ``Target`` is what a scenario needs from a gateway, whichever kind it is:
where it listens, its token, how to restart it, and how long its turns and
thresholds are (a real gateway's turn takes seconds, the simulated one's a
few milliseconds). Real gateways are started once per test module by
``RealGatewayPool`` (each takes 15-30 s to become ready) and stopped at the
module's end; the fake model server behind them is shared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from tests.openclaw.fake_model import FakeModelServer
from tests.openclaw.gateway import OpenClawGateway
from tests.openclaw.install import layout, missing_parts

# The simulated gateway plays both real releases' profiles.
SIM_PROFILES: tuple[str, ...] = ("2026.9", "2026.5.28")
REAL_RELEASES: tuple[str, ...] = ("2026.9.6", "2026.5.28")
# plugin: the gateway has Runboard's companion plugin; observer: a stock gateway without it
# (the simulated one with plugin=False), which the bridge watches in observer mode.
MODES: tuple[str, ...] = ("plugin", "observer")

# The simulated gateway, fast: turns of tens of milliseconds.
SIM_KNOBS = {"turn_median_s": 0.05, "turn_cap_s": 0.1, "activity_interval_s": 0.02}
# With the plugin, the simulated gateway reports what the companion plugin reports on a
# real gateway: registry run ids and a bootId of its own, no session store (protocol.md §3).
SIM_PLUGIN_OPTIONS = {"distinct_registry_ids": True, "registry_reports_store": False}
SIM_STUCK_AFTER_S = 1.0
# A real gateway's normal turn runs for seconds with gaps of several seconds between
# registry activity on this kind of machine; a hung one shows none after it starts.
# On a loaded machine a normal turn once went 20 s without visible progress (and
# was flagged): 40 s leaves it room, at 20 s more per hung-run scenario.
REAL_STUCK_AFTER_S = 40.0


@dataclass
class Target:
    label: str
    kind: str  # "sim" | "openclaw"
    version: str
    mode: str
    url: str
    token: str
    stuck_after_s: float
    turn_timeout_s: float  # generous upper bound for one normal turn
    restart: Callable[[], Awaitable[None]]
    model: FakeModelServer | None = None

    @property
    def real(self) -> bool:
        return self.kind == "openclaw"

    @property
    def observer(self) -> bool:
        return self.mode == "observer"


def target_params() -> list[object]:
    """``(kind, version, mode)`` for every target and mode, real ones marked ``openclaw``."""
    params: list[object] = []
    for mode in MODES:
        for profile in SIM_PROFILES:
            params.append(pytest.param(("sim", profile, mode), id=f"sim-{profile}-{mode}"))
        for version in REAL_RELEASES:
            params.append(
                pytest.param(
                    ("openclaw", version, mode),
                    id=f"openclaw-{version}-{mode}",
                    marks=[pytest.mark.openclaw, pytest.mark.slow],
                )
            )
    return params


def require_installed(version: str) -> None:
    """Fail, saying what to install, when Node/OpenClaw are missing (make test installs them)."""
    missing = missing_parts(layout(), (version,))
    if not missing:
        return
    message = (
        "real OpenClaw tests need " + ", ".join(missing) + "; run: python -m tests.openclaw.install"
    )
    pytest.fail(message)


class RealGatewayPool:
    """Real gateways by (version, plugin), started on first use, stopped by ``close()``."""

    def __init__(self) -> None:
        self._model: FakeModelServer | None = None
        self._gateways: dict[tuple[str, bool], OpenClawGateway] = {}

    @property
    def model(self) -> FakeModelServer:
        if self._model is None:
            self._model = FakeModelServer().start()
        return self._model

    async def gateway(self, version: str, *, plugin: bool) -> OpenClawGateway:
        require_installed(version)
        key = (version, plugin)
        gw = self._gateways.get(key)
        if gw is None:
            gw = OpenClawGateway(version, model_base_url=self.model.base_url, plugin=plugin)
            self._gateways[key] = gw
        if not gw.running:
            await asyncio.to_thread(gw.start)
        return gw

    def close(self) -> None:
        for gw in self._gateways.values():
            gw.cleanup()
        self._gateways.clear()
        if self._model is not None:
            self._model.stop()
            self._model = None
