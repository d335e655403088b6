"""`make demo` with RUNBOARD_DEMO_API_TOKEN: the operator's token works over real HTTP
(daphne, the demo's own server), and is the same one after a restart."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.commands.test_demo import ROOT, free_port_run, manage

pytestmark = pytest.mark.slow

TOKEN = "rb_demo-token-for-the-api-tests-0001"
# An upper bound only: the demo starts in seconds.
START_TIMEOUT_S = 60.0


def call(port: str, path: str, token: str | None, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@contextlib.contextmanager
def demo(env: dict[str, str], log: Path) -> Iterator[None]:
    with log.open("a") as out:  # a file, not a pipe: the demo's log never blocks it
        process = subprocess.Popen(
            [sys.executable, "manage.py", "demo"], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        assert process.returncode == 0, log.read_text()[-4000:]


def wait_for_gateways(port: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            status, body = call(port, "/api/v1/gateways", TOKEN)
            if status == 200 and len(body["gateways"]) == 3:
                gateways: list[dict[str, Any]] = body["gateways"]
                return gateways
        time.sleep(0.5)
    raise AssertionError("the demo's API did not answer with its three gateways")


def token_rows(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as db:
        (count,) = db.execute("SELECT COUNT(*) FROM adminpanel_apitoken").fetchone()
        return int(count)


def test_the_demo_gives_the_operator_the_api_token_and_the_same_one_after_a_restart(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "RUNBOARD_VAR_DIR": str(tmp_path),
        "RUNBOARD_DEMO_PORT": str(free_port_run(1)),
        "RUNBOARD_SIM_BASE_PORT": str(free_port_run(3)),
        "RUNBOARD_GATEWAY_URL": "",
        # The demo runs on its embedded defaults, whatever backends the test run has.
        "RUNBOARD_DATABASE_URL": "",
        "RUNBOARD_REDIS_URL": "",
        "RUNBOARD_DEMO_API_TOKEN": TOKEN,
    }
    port = env["RUNBOARD_DEMO_PORT"]
    manage(env, "migrate", "--noinput")
    manage(env, "demo_users")
    with demo(env, tmp_path / "demo.log"):
        names = {g["name"] for g in wait_for_gateways(port)}
        assert names == {"sim-eu", "sim-us", "sim-next"}
        status, body = call(port, "/api/v1/sessions", None)
        assert status == 401 and "Bearer" in body["error"]
        stale = {"gateway": "sim-eu", "session_key": "agent:main:nobody:direct:x",
                 "reason": "demo check", "expect_run_id": "r"}  # fmt: skip
        status, body = call(port, "/api/v1/actions/force-clear", TOKEN, stale)
        assert status == 404 and "has no session" in body["error"]  # the operator may act
    with demo(env, tmp_path / "demo.log"):
        wait_for_gateways(port)
    assert token_rows(tmp_path / "runboard.sqlite3") == 1
