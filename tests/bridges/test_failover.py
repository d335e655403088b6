"""Failover between real bridge processes on PostgreSQL: one holder per gateway, none lost.

Two ``runbridge`` processes share one simulated gateway under steady load.
The one holding it is SIGKILLed mid-stream; the other takes the gateway over
and resumes from the store's cursor, so the timeline holds every registry
change the gateway numbered, once. (How fast: ``bench/failover.py``.)
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.bridges.conftest import Processes, free_port, query

GATEWAY = "gw"


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.2)


def lease_pid(db: str) -> int | None:
    sql = ("SELECT l.pid FROM adminpanel_gatewaylease l JOIN adminpanel_gateway g "
           "ON g.id = l.gateway_id WHERE g.name = %s AND l.expires_at > now()")  # fmt: skip
    rows = query(db, sql, GATEWAY)
    return int(rows[0][0]) if rows else None  # type: ignore[call-overload]


def cursor(db: str) -> tuple[str, int]:
    rows = query(db, "SELECT boot_id, last_seq FROM adminpanel_gateway WHERE name = %s", GATEWAY)
    return (str(rows[0][0]), int(rows[0][1])) if rows else ("", 0)  # type: ignore[call-overload]


def timeline_seqs(db: str, boot_id: str) -> list[int]:
    sql = ("SELECT t.seq FROM adminpanel_timelineevent t JOIN adminpanel_gateway g "
           "ON g.id = t.gateway_id WHERE g.name = %s AND t.boot_id = %s "
           "AND t.seq IS NOT NULL AND t.kind <> 'snapshot'")  # fmt: skip
    rows = query(db, sql, GATEWAY, boot_id)
    return [int(r[0]) for r in rows]  # type: ignore[call-overload]


def start_stack(database: str, tmp_path: Path) -> Processes:
    port = free_port()
    env = {
        **os.environ,
        "RUNBOARD_DATABASE_URL": database,
        "RUNBOARD_VAR_DIR": str(tmp_path),
        "RUNBOARD_GATEWAY_URL": f"ws://127.0.0.1:{port}",
        "RUNBOARD_GATEWAY_TOKEN": "failover-token",
        "RUNBOARD_GATEWAY_NAME": GATEWAY,
        "RUNBOARD_BRIDGE_LEASE_S": "3",
        "RUNBOARD_BACKOFF_MAX_S": "1",
    }
    env.pop("RUNBOARD_REDIS_URL", None)
    procs = Processes(env, tmp_path)
    procs.manage("migrate", "--noinput", "-v0")
    procs.start("gateway", sys.executable, "-m", "simgateway", "--gateway",
                f"{GATEWAY}=2026.9:{port}", "--token", "failover-token",
                "--workload", "steady", "--rate", "30", "--sessions", "40")  # fmt: skip
    return procs


def test_a_killed_bridges_gateway_is_taken_over_and_no_event_is_lost_or_stored_twice(
    database: str, tmp_path: Path
) -> None:
    procs = start_stack(database, tmp_path)
    try:
        first = procs.bridge("first")
        wait_for("the first bridge holds the gateway", lambda: lease_pid(database) == first.pid)
        second = procs.bridge("second")
        wait_for("both bridges beat", lambda: query(
            database, "SELECT count(*) FROM adminpanel_bridgeinstance")[0][0] == 2)  # fmt: skip
        # One gateway, two bridges: it stays with the first; the second waits.
        wait_for("events flow", lambda: cursor(database)[1] > 100)
        assert lease_pid(database) == first.pid

        first.kill()  # SIGKILL: no clean stop, no release, a batch possibly half-way
        at_kill = cursor(database)[1]
        wait_for("the second bridge takes over", lambda: lease_pid(database) == second.pid)
        wait_for("its events land", lambda: cursor(database)[1] > at_kill + 100)
    finally:
        procs.stop_all()

    boot_id, last_seq = cursor(database)
    seqs = timeline_seqs(database, boot_id)
    expected = set(range(min(seqs), last_seq + 1))
    assert sorted(expected - set(seqs)) == []  # lost
    assert len(seqs) == len(set(seqs))  # duplicated
    assert len(seqs) > 200


def test_a_bridge_that_stops_cleanly_hands_its_gateway_over_at_once(
    database: str, tmp_path: Path
) -> None:
    procs = start_stack(database, tmp_path)
    try:
        first = procs.bridge("first")
        wait_for("the first bridge holds the gateway", lambda: lease_pid(database) == first.pid)
        second = procs.bridge("second")
        wait_for("both bridges beat", lambda: query(
            database, "SELECT count(*) FROM adminpanel_bridgeinstance")[0][0] == 2)  # fmt: skip
        first.terminate()
        assert first.wait(30) == 0
        assert lease_pid(database) is None  # released, not left to expire
        wait_for("the second bridge takes over", lambda: lease_pid(database) == second.pid)
    finally:
        procs.stop_all()
