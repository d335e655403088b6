"""`manage.py runbridge`: mirrors RUNBOARD_GATEWAY_URL's gateway until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.support.fixtures_sim import SimGatewayFactory

ROOT = Path(__file__).resolve().parents[2]
KEY = "agent:main:telegram:direct:runbridge"


def locked_keys(database: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as db:
        rows = db.execute("SELECT session_key FROM adminpanel_session WHERE locked = 1")
        return {key for (key,) in rows}


def env_for(tmp_path: Path, url: str, token: str) -> dict[str, str]:
    return {
        **os.environ,
        "RUNBOARD_VAR_DIR": str(tmp_path),
        "RUNBOARD_GATEWAY_URL": url,
        "RUNBOARD_GATEWAY_TOKEN": token,
        "RUNBOARD_GATEWAY_NAME": "prod",
    }


async def test_runbridge_mirrors_the_gateway_named_in_the_environment_and_stops_on_sigterm(
    sim_gateway: SimGatewayFactory, tmp_path: Path
) -> None:
    gw = await sim_gateway(profile="2026.5.28", token="secret-token")
    gw.send_inbound(KEY, "HANG until cleared")
    env = env_for(tmp_path, gw.url, "secret-token")
    migrate = await asyncio.create_subprocess_exec(
        sys.executable, "manage.py", "migrate", "--noinput", cwd=ROOT, env=env
    )
    assert await migrate.wait() == 0

    bridge = await asyncio.create_subprocess_exec(
        sys.executable,
        "manage.py",
        "runbridge",
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(30):
            while KEY not in locked_keys(tmp_path / "runboard.sqlite3"):  # noqa: ASYNC110
                await asyncio.sleep(0.2)
    finally:
        bridge.send_signal(signal.SIGTERM)
        output, _ = await bridge.communicate()
    text = output.decode()
    assert bridge.returncode == 0, text
    assert "channel_layer_not_shared" in text  # the operator is told why live updates need Redis
    assert "bridges_stopped" in text


def test_runbridge_without_a_gateway_says_how_to_configure_one(tmp_path: Path) -> None:
    env = env_for(tmp_path, "", "")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "runbridge"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "set RUNBOARD_GATEWAY_URL" in result.stderr


async def test_a_second_bridge_on_the_same_sqlite_database_refuses_to_start_and_says_why(
    sim_gateway: SimGatewayFactory, tmp_path: Path
) -> None:
    gw = await sim_gateway(profile="2026.9", token="secret-token")
    env = env_for(tmp_path, gw.url, "secret-token")
    migrate = await asyncio.create_subprocess_exec(
        sys.executable, "manage.py", "migrate", "--noinput", "-v0", cwd=ROOT, env=env
    )
    assert await migrate.wait() == 0
    first = await asyncio.create_subprocess_exec(
        sys.executable, "manage.py", "runbridge", cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with asyncio.timeout(30):
            while not (tmp_path / "runboard.sqlite3.runbridge.lock").exists():  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        second = await asyncio.create_subprocess_exec(
            sys.executable, "manage.py", "runbridge", cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(60):
            _, err = await second.communicate()
        assert second.returncode != 0
        assert f"another bridge (pid {first.pid}) is already running" in err.decode()
        assert "Run several bridges on PostgreSQL" in err.decode()
    finally:
        first.send_signal(signal.SIGTERM)
        await first.communicate()
    assert first.returncode == 0
