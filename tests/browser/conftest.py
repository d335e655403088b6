"""Browser tests: the real app (daphne + bridge, ``manage.py demo``) against a
simulated gateway on loopback, driven by Playwright through Debian's Chromium.

Missing Chromium or Playwright fails these tests; it never skips them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from simgateway.server import SimGateway
from tests.support.app_server import AppServer
from tests.support.fixtures_sim import FAST, SimGatewayFactory

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "runboard-browser"
SIM_TOKEN = "sim-token"


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated database with the demo users, made once and copied per test."""
    var = tmp_path_factory.mktemp("browser-template")
    env = {**os.environ, "RUNBOARD_VAR_DIR": str(var), "RUNBOARD_DEMO_PASSWORD": PASSWORD}
    for command in (["migrate", "--noinput"], ["demo_users"]):
        subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT, env=env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    return var / "runboard.sqlite3"


# Quick thresholds, so a test sees a leak flagged and a reconnect within a second or two.
QUICK = {
    "RUNBOARD_BACKOFF_MAX_S": "0.5",
    "RUNBOARD_DETECT_TICK_S": "0.2",
    "RUNBOARD_TERMINAL_HELD_AFTER_S": "0.5",
}


class Server(AppServer):
    """``manage.py demo`` bridged to one simulated gateway; stop and start it like an operator."""

    def __init__(self, var: Path, gateway_url: str, **settings: str) -> None:
        options = {**QUICK, **settings}
        super().__init__(var, gateway_url, token=SIM_TOKEN, gateway_name="sim-eu", **options)


@pytest.fixture(scope="session")
def chromium() -> Path:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def server_var(tmp_path: Path, template_db: Path) -> Path:
    shutil.copy(template_db, tmp_path / "runboard.sqlite3")
    return tmp_path


async def logged_in_page(browser: Browser, server: Server, path: str = "/") -> Page:
    page = await browser.new_page()
    await page.goto(f"{server.url}/login/?next={path}")
    await page.fill("input[name=username]", "viewer")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{server.url}{path}")
    return page


async def live(page: Page) -> None:
    """Wait until the page's socket is open (the "not live" banner is hidden)."""
    await page.wait_for_function(
        "() => window.runboardLive && window.runboardLive.isLive()", timeout=30_000
    )


@pytest.fixture
async def gateway(sim_gateway: SimGatewayFactory) -> SimGateway:
    """The simulated 2026.5.28 gateway (the first seed's build), with quick turns."""
    return await sim_gateway(profile="2026.5.28", **FAST)


@pytest.fixture
async def server(server_var: Path, gateway: SimGateway) -> AsyncIterator[Server]:
    """``manage.py demo`` bridged to ``gateway``; its log is printed at teardown, which
    pytest shows only next to a failed test's assertion."""
    running = Server(server_var, gateway.url, RUNBOARD_LOG_LEVEL="INFO")
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
        print(running.output())
