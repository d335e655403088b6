"""A running ``runbridge`` notes the audit chain's head on a timer of its own: a quiet
system whose newest entries were deleted behind the model's back shows the cut live
(``audit_head_went_back``), and ``verify_audit --head-file`` reports it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.manage import manage

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60.0
BACKENDS = ("RUNBOARD_DATABASE_URL", "RUNBOARD_REDIS_URL")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"not within {WAIT_S:.0f} s: {what}"
        time.sleep(0.2)


def head_records(path: Path) -> list[tuple[int, str]]:
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(line["seq"], line["hash"]) for line in lines]


def chain(database: Path) -> list[tuple[int, str]]:
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as db:
        return list(db.execute("SELECT seq, hash FROM adminpanel_auditentry ORDER BY seq"))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    # A SQLite file of its own (read and cut below), whatever backends the run has.
    inherited = {k: v for k, v in os.environ.items() if k not in BACKENDS}
    found = {
        **inherited,
        "RUNBOARD_VAR_DIR": str(tmp_path),
        # A gateway that does not answer: the bridge retries, the supervisor runs on.
        "RUNBOARD_GATEWAY_URL": f"ws://127.0.0.1:{closed_port()}",
        "RUNBOARD_GATEWAY_TOKEN": "token",
        "RUNBOARD_GATEWAY_NAME": "gw",
        "RUNBOARD_AUDIT_HEAD_FILE": str(tmp_path / "audit-head.jsonl"),
        "RUNBOARD_AUDIT_HEAD_INTERVAL_S": "1",
    }
    manage(found, "migrate", "--noinput", "-v0", check=False)
    return found


@pytest.fixture
def runbridge(env: dict[str, str], tmp_path: Path) -> Iterator[Path]:
    """A ``runbridge`` process; yields the file its log goes to."""
    log_path = tmp_path / "runbridge.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runbridge"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield log_path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def append_quietly(env: dict[str, str], attempts: int) -> None:
    """Appends from another process that records no head itself (no head file, no interval)."""
    quiet = {**env, "RUNBOARD_AUDIT_HEAD_FILE": "", "RUNBOARD_AUDIT_HEAD_INTERVAL_S": "3600",
             "RUNBOARD_AUDIT_HEAD_EVERY": "1000"}  # fmt: skip
    code = (
        "from tests.audit.support import attempt\n"
        f"for n in range({attempts}):\n"
        "    attempt(reason=f'reason {n}', request_id=f'req-{n}')\n"
    )
    done = manage(quiet, "shell", "-c", code, check=False)
    assert done.returncode == 0, done.stderr


def test_a_bridge_process_records_a_new_head_without_any_further_append(
    env: dict[str, str], runbridge: Path, tmp_path: Path
) -> None:
    head_file = Path(env["RUNBOARD_AUDIT_HEAD_FILE"])
    append_quietly(env, 2)  # an intent and an outcome each
    newest = chain(tmp_path / "runboard.sqlite3")[-1]
    assert newest[0] == 4
    wait_for("the bridge records the head", lambda: newest in head_records(head_file))
    time.sleep(2.5)  # two more rounds: an unchanged head is not recorded again
    assert head_records(head_file) == [newest]
    assert "audit_head_recorded" in runbridge.read_text()


def test_a_tail_cut_on_a_quiet_system_is_warned_about_live_and_caught_by_verify_audit(
    env: dict[str, str], runbridge: Path, tmp_path: Path
) -> None:
    head_file = Path(env["RUNBOARD_AUDIT_HEAD_FILE"])
    database = tmp_path / "runboard.sqlite3"
    append_quietly(env, 3)
    newest = chain(database)[-1]
    wait_for("the bridge records the head", lambda: newest in head_records(head_file))
    # An attacker with the database deletes the newest entries, bypassing the model.
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as db, db:
        db.execute("DELETE FROM adminpanel_auditentry WHERE seq >= 5")
    wait_for("the cut is warned about", lambda: "audit_head_went_back" in runbridge.read_text())
    assert head_records(head_file)[-1] == newest  # the lower head is not recorded over it
    done = manage(env, "verify_audit", "--head-file", str(head_file), check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "entry #5-#6 was removed" in done.stderr
