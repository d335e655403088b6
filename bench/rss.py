"""Benchmark ``rss_mb``: resident memory of one web worker and one bridge under steady load.

The production shape (``stack.servers``): PostgreSQL 15 and Redis 7 started
in a temporary folder, a store bulk-loaded with 100,000 sessions and
1,000,000 timeline rows before anything starts, then one ``manage.py runweb``
and one ``manage.py runbridge`` mirroring one simulated gateway
(``python -m simgateway --workload steady``). ``baseline_web`` and
``baseline_bridge`` are their RSS (``VmRSS`` of /proc/<pid>/status) right
after start, before any load; ``web`` and ``bridge`` after ``--load-s``
seconds (default 300) of the gateway's steady workload, ``VIEWERS`` WebSocket
viewers on the sessions socket and a sessions page load every
``PAGE_EVERY_S`` seconds. ``*_max`` are the highest samples (every 10 s) of
the load. Viewers' messages and page loads are counted, so it is visible
whether every client was served.

Run: ``.venv/bin/python -m bench.rss [--load-s SECONDS]`` (or ``python -m bench rss``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.bulk_store import load_timeline
from bench.support import exit_on_sigterm
from stack.servers import PostgresServer, RedisServer, free_port, secret_key_env

ROOT = Path(__file__).resolve().parent.parent
SESSIONS = 100_000
TIMELINE_ROWS = 1_000_000
VIEWERS = 5
PAGE_EVERY_S = 3.0
SAMPLE_EVERY_S = 10.0
GATEWAY = "rss-gw"
TOKEN = "rss-bench-token"
RATE = 20.0  # messages/s the simulated gateway's steady workload sends
GATEWAY_SESSIONS = 2000


def log(message: str) -> None:
    print(f"rss: {message}", file=sys.stderr, flush=True)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def prepare_store(gateway_port: int) -> tuple[str, str]:
    """Migrate, bulk-load sessions and timeline, register the gateway; a viewer's cookie."""
    from django.core.management import call_command

    from adminpanel.models import Gateway
    from bench.event_to_dom import login_cookie
    from bench.sessions_page import NOW, _gateways, insert_sessions

    call_command("migrate", verbosity=0, interactive=False)
    stored = _gateways()
    for chunk in range(0, SESSIONS, 20_000):
        insert_sessions(chunk, min(SESSIONS, chunk + 20_000), stored)
    Gateway.objects.filter(pk__in=stored).update(enabled=False)  # stored, not mirrored
    started = time.perf_counter()
    rows = load_timeline(TIMELINE_ROWS, NOW)
    fill_s = time.perf_counter() - started
    log(f"{SESSIONS} sessions and {rows} timeline rows stored in {fill_s:.0f} s")
    Gateway.objects.create(
        name=GATEWAY, url=f"ws://127.0.0.1:{gateway_port}", token=TOKEN, enabled=True
    )
    return login_cookie()


def wait_http(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/healthz", timeout=5):
            return
        time.sleep(0.3)
    raise SystemExit(f"the web worker at {url} did not answer within {timeout_s:.0f} s")


async def load(url: str, cookie: str, seconds: float, pids: dict[str, int]) -> dict[str, Any]:
    """Viewers on the socket and a page load every few seconds; RSS sampled throughout."""
    from websockets.asyncio.client import connect

    ws_url = url.replace("http", "ws", 1)
    headers = {"Cookie": cookie, "Origin": url}
    sockets = [await connect(f"{ws_url}/ws/sessions/", additional_headers=headers, max_size=None)
               for _ in range(VIEWERS)]  # fmt: skip
    received = [0] * VIEWERS
    errors: list[str] = []

    async def read(n: int) -> None:
        try:
            async for _ in sockets[n]:
                received[n] += 1
        except Exception as exc:  # reported, not hidden
            errors.append(f"viewer {n}: {exc!r}")

    def page() -> int:
        request = urllib.request.Request(f"{url}/", headers={"Cookie": cookie})
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)

    readers = [asyncio.create_task(read(n)) for n in range(VIEWERS)]
    samples: dict[str, list[float]] = {name: [] for name in pids}
    pages_ok = pages_failed = 0
    started = time.monotonic()
    next_sample = started
    while time.monotonic() - started < seconds:
        try:
            ok = await asyncio.to_thread(page) == 200
        except OSError:
            ok = False
        pages_ok, pages_failed = pages_ok + ok, pages_failed + (not ok)
        if time.monotonic() >= next_sample:
            for name, pid in pids.items():
                samples[name].append(rss_mb(pid))
            next_sample += SAMPLE_EVERY_S
        await asyncio.sleep(PAGE_EVERY_S)
    for ws in sockets:
        await ws.close()
    await asyncio.gather(*readers, return_exceptions=True)
    return {"samples": samples, "viewer_messages": received, "viewer_errors": errors,
            "pages_ok": pages_ok, "pages_failed": pages_failed}  # fmt: skip


def spawn(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    out = open(log_path, "ab")  # noqa: SIM115 - the child writes to it until stopped
    try:
        return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    finally:
        out.close()


def stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def events_stored() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM adminpanel_timelineevent t JOIN adminpanel_gateway g "
            "ON g.id = t.gateway_id WHERE g.name = %s", [GATEWAY]
        )  # fmt: skip
        return int(cursor.fetchone()[0])


def measure(folder: Path, load_s: float) -> dict[str, Any]:
    pg, redis = PostgresServer(folder / "postgres"), RedisServer(folder / "redis")
    children: list[subprocess.Popen[bytes]] = []
    try:
        pg.start()
        redis.start()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "runboard.settings",
            "RUNBOARD_DATABASE_URL": pg.url,
            "RUNBOARD_REDIS_URL": redis.url,
            "RUNBOARD_VAR_DIR": str(folder),
            **secret_key_env(lambda: secrets.token_urlsafe(50)),
            "RUNBOARD_LOG_LEVEL": os.environ.get("RUNBOARD_LOG_LEVEL", "WARNING"),
        }
        os.environ.update(env)
        import django

        django.setup()
        gateway_port, web_port = free_port(), free_port()
        name, value = prepare_store(gateway_port)
        from bench.support import close_django

        close_django()
        cookie, url = f"{name}={value}", f"http://127.0.0.1:{web_port}"
        manage = [sys.executable, str(ROOT / "manage.py")]
        web = spawn([*manage, "runweb", "--port", str(web_port)], env, folder / "web.log")
        bridge = spawn([*manage, "runbridge"], env, folder / "bridge.log")
        children += [web, bridge]
        wait_http(url)
        time.sleep(5)  # the bridge's start-up (leases, its first connection attempts)
        pids = {"web": web.pid, "bridge": bridge.pid}
        baseline = {name: rss_mb(pid) for name, pid in pids.items()}
        log(f"after start: web {baseline['web']:.0f} MB, bridge {baseline['bridge']:.0f} MB")
        gateway = spawn(
            [sys.executable, "-m", "simgateway", "--gateway", f"{GATEWAY}=2026.9:{gateway_port}",
             "--token", TOKEN, "--workload", "steady", "--rate", str(RATE),
             "--sessions", str(GATEWAY_SESSIONS)],
            env, folder / "gateway.log",
        )  # fmt: skip
        children.insert(0, gateway)
        result = asyncio.run(load(url, cookie, load_s, pids))
        final = {name: rss_mb(pid) for name, pid in pids.items()}
        alive = all(child.poll() is None for child in children)
        stop(children)
        if result["viewer_errors"] or not alive:  # say why, from the processes' own logs
            for name in ("web", "bridge", "gateway"):
                lines = (folder / f"{name}.log").read_text(errors="replace").splitlines()
                log(f"{name}.log, last lines:\n" + "\n".join(lines[-40:]))
        events = events_stored()
        close_django()
    finally:
        stop(children)
        with contextlib.suppress(Exception):
            from bench.support import close_django

            close_django()
        redis.stop()
        pg.stop()
    samples = result["samples"]
    return {
        "metric": "rss_mb",
        "web": round(final["web"], 1),
        "bridge": round(final["bridge"], 1),
        "baseline_web": round(baseline["web"], 1),
        "baseline_bridge": round(baseline["bridge"], 1),
        "baseline_metric": "RSS right after start, before load",
        "web_max": round(max(samples["web"], default=final["web"]), 1),
        "bridge_max": round(max(samples["bridge"], default=final["bridge"]), 1),
        "unit": "MB (VmRSS)",
        "sessions": SESSIONS,
        "timeline_rows": TIMELINE_ROWS,
        "load_s": load_s,
        "gateway_rate": RATE,
        "gateway_events_stored": events,
        "viewers": VIEWERS,
        "viewer_messages_min": min(result["viewer_messages"]),
        "viewer_errors": result["viewer_errors"],
        "pages_ok": result["pages_ok"],
        "pages_failed": result["pages_failed"],
        "all_served": alive
        and not result["viewer_errors"]
        and not result["pages_failed"]
        and min(result["viewer_messages"]) > 0,
    }


def main(argv: list[str]) -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(prog="python -m bench.rss")
    parser.add_argument("--load-s", type=float, default=300.0, help="seconds of steady load")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="runboard-bench-rss-"))
    folder.chmod(0o755)  # the postgres user must reach its data folder inside
    try:
        figures = measure(folder, args.load_s)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
