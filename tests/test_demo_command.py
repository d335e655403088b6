"""`make demo`'s commands, run as a user runs them: processes, ports, Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The demo stages its failures within its first minute; this is only an upper bound.
DEADLINE_S = 120.0


def free_port_run(count: int) -> int:
    """A first port with ``count`` free loopback ports in a row."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count < 65535 and all(_free(base + n) for n in range(count)):
            return base
    raise RuntimeError("no run of free loopback ports")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def active_flag_codes(database: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as db:
        rows = db.execute("SELECT code FROM adminpanel_flag WHERE cleared_at IS NULL")
        return {code for (code,) in rows}


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except OSError:
        return 0


@pytest.fixture
def demo_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    yield {
        **os.environ,
        "RUNBOARD_VAR_DIR": str(tmp_path),
        "RUNBOARD_DEMO_PORT": str(free_port_run(1)),
        "RUNBOARD_SIM_BASE_PORT": str(free_port_run(3)),
        "RUNBOARD_GATEWAY_URL": "",
    }


@pytest.mark.slow
def test_the_demo_shows_the_seeded_failures_flagged_and_stops_cleanly_on_ctrl_c(
    demo_env: dict[str, str], tmp_path: Path
) -> None:
    manage(demo_env, "migrate", "--noinput")
    users = manage(demo_env, "demo_users")
    assert "as admin, operator or viewer" in users.stdout

    demo = subprocess.Popen(
        [sys.executable, "manage.py", "demo"],
        cwd=ROOT,
        env=demo_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wanted = {"terminal_but_held", "store_disagrees", "unbounded_waiter", "alternating_error"}
    try:
        deadline = time.monotonic() + DEADLINE_S
        codes: set[str] = set()
        while time.monotonic() < deadline and not wanted <= codes:
            time.sleep(1)
            with contextlib.suppress(sqlite3.OperationalError):
                codes = active_flag_codes(tmp_path / "runboard.sqlite3")
        assert wanted <= codes
        login = f"http://127.0.0.1:{demo_env['RUNBOARD_DEMO_PORT']}/login/"
        assert http_status(login) == 200
    finally:
        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=30)
    assert demo.returncode == 0, output
    assert "sim_gateways_stopped" in output
    assert "returncode=0" in output
