"""bridge_failover_s: SIGKILL the bridge holding a gateway under load; how soon another takes over.

A real PostgreSQL (stack.servers), one simulated gateway (2026.9) under a
steady workload, two ``manage.py runbridge`` processes sharing it through
leases. Ten times: SIGKILL the bridge that holds the gateway, time until the
other bridge holds it *and* its events land in the store (the gateway's
cursor moves past where it was at the kill), then start a fresh bridge so two
are running again. ``lost`` and ``duplicated`` count the gateway's own
sequence numbers missing from, or twice in, the timeline over the whole run.

The baseline, in the same run: the same handover after a clean stop
(SIGTERM: the bridge releases its lease at once), ten times, alternating with
the kills. Goal: p99 ≤ 10 s, nothing lost or duplicated.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from bench.support import exit_on_sigterm, percentile
from stack.servers import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = "gw"
KILLS = 10
LEASE_S = "6"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Run:
    def __init__(self, folder: Path, url: str) -> None:
        self.folder = folder
        self.url = url.replace("postgres://", "postgresql://")
        self.gateway_port = free_port()
        self.env = {
            **os.environ,
            "RUNBOARD_DATABASE_URL": url,
            "RUNBOARD_VAR_DIR": str(folder),
            "RUNBOARD_GATEWAY_URL": f"ws://127.0.0.1:{self.gateway_port}",
            "RUNBOARD_GATEWAY_TOKEN": "bench-token",
            "RUNBOARD_GATEWAY_NAME": GATEWAY,
            "RUNBOARD_BRIDGE_LEASE_S": LEASE_S,
            "RUNBOARD_LOG_LEVEL": "WARNING",
        }
        self.env.pop("RUNBOARD_REDIS_URL", None)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.db = psycopg.connect(self.url, autocommit=True)

    def start(self, *argv: str) -> subprocess.Popen[bytes]:
        log = open(self.folder / f"proc-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(list(argv), cwd=ROOT, env=self.env, stdout=log,
                                stderr=subprocess.STDOUT)  # fmt: skip
        log.close()
        self.procs.append(proc)
        return proc

    def bridge(self) -> subprocess.Popen[bytes]:
        return self.start(sys.executable, "manage.py", "runbridge")

    def one(self, sql: str, *params: object) -> tuple[object, ...] | None:
        return self.db.execute(sql, params).fetchone()  # type: ignore[arg-type]

    def holder_pid(self) -> int | None:
        row = self.one("SELECT l.pid FROM adminpanel_gatewaylease l JOIN adminpanel_gateway g "
                       "ON g.id = l.gateway_id WHERE g.name = %s AND l.expires_at > now()",
                       GATEWAY)  # fmt: skip
        return int(row[0]) if row else None  # type: ignore[call-overload]

    def last_seq(self) -> int:
        row = self.one("SELECT last_seq FROM adminpanel_gateway WHERE name = %s", GATEWAY)
        return int(row[0]) if row else 0  # type: ignore[call-overload]

    def wait(self, check: Callable[[], bool], timeout_s: float = 120.0) -> float:
        started = time.monotonic()
        while not check():
            if time.monotonic() - started > timeout_s:
                raise TimeoutError("gave up waiting")
            time.sleep(0.05)
        return time.monotonic() - started

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.db.close()


def handover(run: Run, bridges: list[subprocess.Popen[bytes]], how: int) -> float:
    """Stop the holder with ``how``; seconds until the other bridge's events land."""
    holder = next(b for b in bridges if b.pid == run.holder_pid())
    other = next(b for b in bridges if b is not holder)
    before = run.last_seq()
    holder.send_signal(how)
    stopped = time.monotonic()
    run.wait(lambda: run.holder_pid() == other.pid and run.last_seq() > before + 20)
    took = time.monotonic() - stopped
    holder.wait(30)
    bridges.remove(holder)
    fresh = run.bridge()
    bridges.append(fresh)
    beats = (
        "SELECT count(*) FROM adminpanel_bridgeinstance WHERE heartbeat_at > now() - interval '3 s'"
    )
    run.wait(lambda: (run.one(beats) or (0,))[0] == 2)  # type: ignore[operator]
    return took


def main() -> int:
    exit_on_sigterm()
    folder = Path(tempfile.mkdtemp(prefix="runboard-failover-"))
    folder.chmod(0o755)
    pg = PostgresServer(folder / "pg")
    pg.start()
    run = Run(folder, pg.url)
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT,
                       env=run.env, check=True)  # fmt: skip
        run.start(sys.executable, "-m", "simgateway", "--gateway",
                  f"{GATEWAY}=2026.9:{run.gateway_port}", "--token", "bench-token",
                  "--workload", "steady", "--rate", "40", "--sessions", "60")  # fmt: skip
        bridges = [run.bridge()]
        run.wait(lambda: run.holder_pid() == bridges[0].pid)
        bridges.append(run.bridge())
        run.wait(lambda: run.last_seq() > 200)
        kills: list[float] = []
        clean: list[float] = []
        for _ in range(KILLS):
            kills.append(handover(run, bridges, signal.SIGKILL))
            clean.append(handover(run, bridges, signal.SIGTERM))
        at_end = run.last_seq()
        run.wait(lambda: run.last_seq() > at_end + 20)
        boot = run.one("SELECT boot_id, last_seq FROM adminpanel_gateway WHERE name = %s", GATEWAY)
        assert boot is not None
        rows = run.db.execute(
            "SELECT t.seq FROM adminpanel_timelineevent t JOIN adminpanel_gateway g "
            "ON g.id = t.gateway_id WHERE g.name = %s AND t.boot_id = %s AND t.seq IS NOT NULL "
            "AND t.kind <> 'snapshot'", (GATEWAY, boot[0]),
        ).fetchall()  # fmt: skip
        seqs = [int(r[0]) for r in rows]
        expected = set(range(min(seqs), int(boot[1]) + 1))  # type: ignore[call-overload]
        result = {
            "metric": "bridge_failover_s",
            "p99": round(percentile(kills, 99), 2),
            "p50": round(percentile(kills, 50), 2),
            "max": round(max(kills), 2),
            "kills": len(kills),
            "lost": len(expected - set(seqs)),
            "duplicated": len(seqs) - len(set(seqs)),
            "events": len(seqs),
            "lease_s": float(LEASE_S),
            "baseline": "clean stop (SIGTERM) handover, same run",
            "baseline_p50": round(percentile(clean, 50), 2),
            "baseline_p99": round(percentile(clean, 99), 2),
            "samples_s": [round(k, 2) for k in kills],
        }
        print(json.dumps(result), flush=True)
        return 0
    finally:
        run.stop()
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
