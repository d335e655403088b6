"""`make demo`'s commands, run as a user runs them: processes, ports, Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.notify.receivers import http_receiver
from tests.support.manage import manage

ROOT = Path(__file__).resolve().parents[2]
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


def active_flag_codes(database: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as db:
        rows = db.execute("SELECT code FROM adminpanel_flag WHERE cleared_at IS NULL")
        return {code for (code,) in rows}


def skip_reasons(database: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as db:
        rows = db.execute("SELECT DISTINCT reason FROM adminpanel_dispatchskip WHERE kind='skip'")
        return {reason for (reason,) in rows}


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
        # The demo runs on its embedded defaults, whatever backends the test run has.
        "RUNBOARD_DATABASE_URL": "",
        "RUNBOARD_REDIS_URL": "",
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
    # no_progress needs RUNBOARD_STUCK_AFTER_S (120 s by default): the notice test shortens it.
    wanted = {
        "terminal_but_held", "store_disagrees", "unbounded_waiter", "alternating_error",
        "skip_burst",
    }  # fmt: skip
    try:
        deadline = time.monotonic() + DEADLINE_S
        codes: set[str] = set()
        while time.monotonic() < deadline and not wanted <= codes:
            time.sleep(1)
            with contextlib.suppress(sqlite3.OperationalError):
                codes = active_flag_codes(tmp_path / "runboard.sqlite3")
        assert wanted <= codes
        assert skip_reasons(tmp_path / "runboard.sqlite3") >= {"active-run"}
        login = f"http://127.0.0.1:{demo_env['RUNBOARD_DEMO_PORT']}/login/"
        assert http_status(login) == 200
    finally:
        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=30)
    assert demo.returncode == 0, output
    assert "sim_gateways_stopped" in output
    assert "returncode=0" in output


def timeline_events(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as db:
        (count,) = db.execute("SELECT COUNT(*) FROM adminpanel_timelineevent").fetchone()
        return int(count)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
def test_the_demo_starts_its_bridge_process_again_when_it_dies(
    demo_env: dict[str, str], tmp_path: Path
) -> None:
    manage(demo_env, "migrate", "--noinput")
    demo = subprocess.Popen(
        [sys.executable, "manage.py", "demo"],
        cwd=ROOT, env=demo_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    reading = threading.Thread(target=lambda: lines.extend(demo.stdout or ()), daemon=True)
    reading.start()
    database = tmp_path / "runboard.sqlite3"

    def bridge_pids() -> list[int]:
        return [int(m) for m in re.findall(r"bridge_process_started\s.*?pid=(\d+)", "".join(lines))]

    def mirrored_since(count: int) -> bool:
        with contextlib.suppress(sqlite3.OperationalError):
            return timeline_events(database) > count
        return False

    try:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline and not mirrored_since(0):
            time.sleep(0.5)
        (first,) = bridge_pids()
        os.kill(first, signal.SIGKILL)
        while time.monotonic() < deadline and len(bridge_pids()) < 2:
            time.sleep(0.2)
        assert "bridge_process_exited" in "".join(lines)
        second = bridge_pids()[1]
        assert second != first and alive(second)
        count = timeline_events(database)
        while time.monotonic() < deadline and not mirrored_since(count):
            time.sleep(0.5)
        assert mirrored_since(count), "the restarted bridge process mirrors nothing"
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=30)
        reading.join(timeout=5)
    assert demo.returncode == 0, "".join(lines)
    assert not any(alive(pid) for pid in bridge_pids())
    assert "bridge_process_stopped" in "".join(lines)


def stuck_notice(bodies: list[Any]) -> dict[str, Any] | None:
    """The first notice raising ``no_progress`` for a session, if one came."""
    for body in list(bodies):
        flag = body.get("flag") if isinstance(body, dict) else None
        if not isinstance(flag, dict) or body.get("event") != "flag_raised":
            continue
        if flag.get("code") == "no_progress" and body.get("session_key"):
            return dict(body)
    return None


@pytest.mark.slow
def test_the_demo_posts_a_notice_for_its_stuck_session_to_the_environments_webhook(
    demo_env: dict[str, str],
) -> None:
    stuck_after_s = 10
    manage(demo_env, "migrate", "--noinput")
    with http_receiver() as receiver:
        env = {
            **demo_env,
            "RUNBOARD_NOTIFY_WEBHOOK_URL": receiver.url,
            "RUNBOARD_STUCK_AFTER_S": str(stuck_after_s),
        }
        started = time.time()
        demo = subprocess.Popen(
            [sys.executable, "manage.py", "demo"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        lines: list[str] = []
        reading = threading.Thread(target=lambda: lines.extend(demo.stdout or ()), daemon=True)
        reading.start()
        notice: dict[str, Any] | None = None
        try:
            deadline = time.monotonic() + DEADLINE_S
            while time.monotonic() < deadline and notice is None:
                time.sleep(0.1)
                notice = stuck_notice(receiver.bodies)
            arrived = time.time()
        finally:
            demo.send_signal(signal.SIGINT)
            demo.wait(timeout=30)
            reading.join(timeout=5)
    assert notice is not None, "no no_progress notice within the bound:\n" + "".join(lines)
    assert notice["gateway"] in ("sim-eu", "sim-next")
    assert notice["session_key"].endswith(":demo-hung")
    assert notice["session_url"]
    since = datetime.fromisoformat(notice["flag"]["since"]).timestamp()
    # Figures for the report (printed with -s), never asserted as timings.
    print(
        f"\nstuck notice: {arrived - since:.1f} s after the threshold was crossed, "
        f"{arrived - started:.1f} s after the demo started (RUNBOARD_STUCK_AFTER_S={stuck_after_s})"
    )
    assert demo.returncode == 0, "".join(lines)
