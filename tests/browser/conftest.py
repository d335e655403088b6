"""Browser tests: the real app (daphne + bridge, ``manage.py demo``) against a
simulated gateway on loopback, driven by Playwright through Debian's Chromium.

Missing Chromium or Playwright fails these tests; it never skips them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

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
# Upper bounds only: the server starts in a few seconds on an idle machine.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
SIM_TOKEN = "sim-token"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


class Server:
    """``manage.py demo`` bridged to one gateway URL; stop and start it like an operator would."""

    def __init__(self, var: Path, gateway_url: str, **settings: str) -> None:
        self.var = var
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "RUNBOARD_VAR_DIR": str(var),
            "RUNBOARD_DEMO_PORT": str(self.port),
            "RUNBOARD_GATEWAY_URL": gateway_url,
            "RUNBOARD_GATEWAY_TOKEN": SIM_TOKEN,
            "RUNBOARD_GATEWAY_NAME": "sim-eu",
            "RUNBOARD_BACKOFF_MAX_S": "0.5",
            "RUNBOARD_DETECT_TICK_S": "0.2",
            "RUNBOARD_TERMINAL_HELD_AFTER_S": "0.5",
            "RUNBOARD_LOG_LEVEL": "WARNING",
            **settings,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.starts += 1
        with open(self.var / f"server-{self.starts}.log", "wb") as log:
            return subprocess.Popen(
                [sys.executable, "manage.py", "demo"], cwd=ROOT, env=self.env, stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    async def start(self) -> None:
        self.process = self._spawn()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not await asyncio.to_thread(self._answers):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {self.output()}")
            await asyncio.sleep(0.1)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/login/", timeout=2) as response:
                return int(response.status) == 200
        except OSError:
            return False

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.to_thread(process.wait, STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)

    def output(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.var.glob("server-*.log"))
        )


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
