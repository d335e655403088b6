"""fanout_event_to_dom_ms: event-to-DOM latency on the production shape, 200 viewers, 500 events/s.

The ``make stack`` topology, started the way ``stack/__main__.py`` starts it
but in a scratch folder on free ports: PostgreSQL 15 and Redis 7
(``stack.servers``), migrations, the demo users, two web workers
(``manage.py runweb``) and two bridges (``manage.py runbridge``) sharing the
gateway through their leases. The gateway is a simulated one (2026.9) in its
own process, ``python -m simgateway --workload steady``, at a message rate
that makes it emit about 500 registry events a second; the bench measures the
rate it actually emitted with a registry subscription of its own.

200 WebSocket viewers (a separate process, logged in with a session cookie,
half on each worker) count the messages they receive and report any read
error; one Chromium shows the sessions page on the first worker, and a
MutationObserver stamps when a probe row's lock appears (the method of
``bench.event_to_dom``, whose sampler this reuses). Probes are driven over
the gateway protocol (``chat.send`` "HANG", then ``chat.abort``), half on
quiet rows (still for 1.5 s), half on busy ones (pushed 0.2 s before).

The baseline, in the same run on the same stack: the same probes with no
load and no other viewer (the gateway first runs without a workload; it is
then restarted with the steady workload on the same port, and the bridge
resyncs). Goal: p99 <= 100 ms, busy_p99 <= 300 ms, every viewer served.
Notes: docs/notes/fanout.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from bench.event_to_dom import (
    CHROMIUM,
    CHROMIUM_ARGS,
    OBSERVE_ROWS,
    Viewers,
    child_pids,
    cpu_seconds,
    login_cookie,
    sample,
    split_figures,
    viewers_served,
)
from bench.support import exit_on_sigterm
from stack.servers import PostgresServer, RedisServer, free_port, secret_key_env

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = "bench"
TOKEN = "bench-token"
PROFILE = "2026.9"
# Messages a second into the steady workload: on 2026.9 a message makes about
# eleven registry events (lock, phases, activity, release), so 46/s is about
# 500 events/s. The printed rate is the one measured, whatever this gives.
MESSAGES_PER_S = 46.0
LOAD_SESSIONS = 200
VIEWERS = 200
PROBES = 12
SAMPLES = 120  # per phase: half busy, half quiet
START_TIMEOUT_S = 60.0
RESYNC_WAIT_MS = 60_000  # the bridge's reconnect after the gateway's restart, an upper bound
# The database's and Redis' server processes, for the CPU report (set by main()).
SERVERS: dict[str, int] = {}


class Processes:
    """The stack's children, each logging to a file in the scratch folder, stopped in reverse."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def manage(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.folder / f"{name.replace(':', '-')}.log", "ab") as log:
            child = subprocess.Popen(
                [sys.executable, *argv], cwd=ROOT, env=self.env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.children[name] = child
        return child

    def stop(self, name: str) -> None:
        child = self.children.pop(name)
        if child.poll() is None:
            child.send_signal(signal.SIGINT if name == "gateway" else signal.SIGTERM)
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def stop_all(self) -> None:
        for name in reversed(list(self.children)):
            self.stop(name)

    def dead(self) -> list[str]:
        return [
            f"{n} exited {c.returncode}" for n, c in self.children.items() if c.poll() is not None
        ]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/login/", timeout=2) as response:
            return int(response.status) == 200
    except OSError:
        return False


async def wait_for(ready: Any, what: str, processes: Processes) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not await ready():
        if processes.dead() or time.monotonic() > deadline:
            raise SystemExit(f"{what} not ready: {processes.dead()} (logs: {processes.folder})")
        await asyncio.sleep(0.2)


class GatewayLine:
    """The bench's own connections to the gateway: one drives the probes, one counts events."""

    def __init__(self, url: str) -> None:
        from gateway_bridge.client import GatewayClient
        from gateway_bridge.frames import Event

        self.events = 0

        def count(event: Event) -> None:
            if event.event == "runboard.registry":
                self.events += 1

        self.control = GatewayClient(url, TOKEN)
        self.counter = GatewayClient(url, TOKEN, on_event=count)

    async def connect(self) -> bool:
        from gateway_bridge.errors import GatewayError

        try:
            await self.control.connect()
            await self.counter.connect()
            await self.counter.call("runboard.registry.subscribe", {})
        except GatewayError:
            await self.close()
            return False
        return True

    async def hang(self, key: str) -> None:
        message = {"sessionKey": key, "message": "HANG for the bench"}
        await self.control.call("chat.send", {**message, "idempotencyKey": uuid.uuid4().hex})

    async def release(self, key: str) -> None:
        await self.control.call("chat.abort", {"sessionKey": key})

    async def close(self) -> None:
        await self.control.close()
        await self.counter.close()


async def gateway_line(
    processes: Processes, port: int, workload: str
) -> tuple[GatewayLine, subprocess.Popen[bytes]]:
    """Start the gateway process with ``workload`` and connect the bench's lines to it."""
    child = processes.spawn("gateway", [
        "-m", "simgateway", "--gateway", f"{GATEWAY}={PROFILE}:{port}", "--token", TOKEN,
        "--workload", workload, "--rate", str(MESSAGES_PER_S), "--sessions", str(LOAD_SESSIONS),
    ])  # fmt: skip
    url = f"ws://127.0.0.1:{port}"
    line = GatewayLine(url)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not await line.connect():
        if child.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the gateway did not start (logs: {processes.folder})")
        await asyncio.sleep(0.2)
        line = GatewayLine(url)
    return line, child


async def probe_rows(keys: list[str]) -> list[tuple[str, str]]:
    """Each probe key with its row's element id, once the bridge has stored them all."""
    from asgiref.sync import sync_to_async

    from adminpanel.models import Session

    def stored() -> dict[str, int]:
        rows = Session.objects.filter(session_key__in=keys).values_list("session_key", "pk")
        return dict(rows)

    deadline = time.monotonic() + START_TIMEOUT_S
    rows = await sync_to_async(stored)()
    while len(rows) < len(keys):
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(rows)} of {len(keys)} probe sessions were stored")
        await asyncio.sleep(0.3)
        rows = await sync_to_async(stored)()
    return [(key, f"session-{rows[key]}") for key in keys]


async def scenario(
    folder: Path, env: dict[str, str], cookie: tuple[str, str], port: int
) -> dict[str, Any]:
    """The baseline, then the load; ``port`` is the gateway's (the bridges read it from ``env``)."""
    from playwright.async_api import async_playwright

    processes = Processes(folder, env)
    webs = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    probe_keys = [f"agent:main:telegram:direct:probe-{n}" for n in range(PROBES)]
    try:
        line, _ = await gateway_line(processes, port, "none")
        for n, url in enumerate(webs, 1):
            processes.spawn(f"web:{n}", ["manage.py", "runweb", "--port", url.rsplit(":", 1)[1]])
        for n in (1, 2):
            processes.spawn(f"bridge:{n}", ["manage.py", "runbridge"])
        for url in webs:
            await wait_for(lambda url=url: asyncio.to_thread(answers, url), url, processes)
        for key in probe_keys:
            await line.control.call("chat.send", {
                "sessionKey": key, "message": "hello", "idempotencyKey": uuid.uuid4().hex,
            })  # fmt: skip
        probes = await probe_rows(probe_keys)
        await asyncio.sleep(1.5)  # the hellos' turns have ended and their rows are quiet

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = await browser.new_context()
            name, value = cookie
            await context.add_cookies([{"name": name, "value": value, "url": webs[0]}])
            page = await context.new_page()
            await page.goto(f"{webs[0]}/")
            await page.wait_for_function("() => window.runboardLive && runboardLive.isLive()")
            for _, row_id in probes:
                await page.wait_for_selector(f"#{row_id}")
            await page.evaluate(OBSERVE_ROWS, [row_id for _, row_id in probes])

            await sample(page, line.hang, line.release, probes, 6)  # warm-up
            baseline = await sample(page, line.hang, line.release, probes, SAMPLES)

            # The load: the same gateway restarted with the steady workload.
            await line.close()
            processes.stop("gateway")
            line, _ = await gateway_line(processes, port, "steady")
            await sample(page, line.hang, line.release, probes, 2, wait_ms=RESYNC_WAIT_MS)
            viewers = Viewers(webs, cookie, VIEWERS)
            await viewers.start()
            await asyncio.sleep(2.0)
            pids = {n: c.pid for n, c in processes.children.items()}
            # The harness shares the cores: its viewers' process and the bench itself.
            assert viewers.process is not None
            pids |= {"harness:viewers": viewers.process.pid, "harness:bench": os.getpid()}
            cpu_before = {n: cpu_seconds(pid) for n, pid in pids.items()}
            servers_before = {n: tree_cpu(pid) for n, pid in SERVERS.items()}
            events, started = line.events, time.monotonic()
            marked = await viewers.mark()
            loaded = await sample(page, line.hang, line.release, probes, SAMPLES)
            window = await viewers.mark()
            elapsed = time.monotonic() - started
            rate = (line.events - events) / elapsed
            cpu = {n: (cpu_seconds(pid) - cpu_before[n]) / elapsed for n, pid in pids.items()}
            for n, pid in SERVERS.items():
                after, before = tree_cpu(pid), servers_before[n]
                cpu[n] = sum(t - before.get(p, 0.0) for p, t in after.items()) / elapsed
            report = await viewers.stop()
            await browser.close()
            await line.close()
            dead = processes.dead()
    finally:
        processes.stop_all()
    return {
        "baseline": baseline,
        "loaded": loaded,
        "events_per_s": rate,
        "viewers": viewers_served(marked, window, report),
        "cpu": cpu,
        "dead": dead,
    }


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds so far of a server and each of its children (PostgreSQL's backends)."""
    found = {}
    for p in [pid, *child_pids(pid)]:
        with contextlib.suppress(OSError):
            found[p] = cpu_seconds(p)
    return found


def stack_env(folder: Path, pg: PostgresServer, redis: RedisServer) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "runboard.settings",
        "RUNBOARD_DATABASE_URL": pg.url,
        "RUNBOARD_REDIS_URL": redis.url,
        **secret_key_env(lambda: secrets.token_urlsafe(50)),
        "RUNBOARD_VAR_DIR": str(folder),
        "RUNBOARD_LOG_LEVEL": "WARNING",
        "RUNBOARD_GATEWAY_URL": "",  # set once the gateway's port is chosen
        "RUNBOARD_GATEWAY_TOKEN": TOKEN,
        "RUNBOARD_GATEWAY_NAME": GATEWAY,
    }


def main() -> None:
    exit_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="runboard-fanout-") as scratch:
        folder = Path(scratch)
        folder.chmod(0o755)  # PostgreSQL runs as its own user when we are root
        pg, redis = PostgresServer(folder / "postgres"), RedisServer(folder / "redis")
        pg.start()
        redis.start()
        SERVERS.update(postgres=pg.pid, redis=redis.pid)
        try:
            env = stack_env(folder, pg, redis)
            env["RUNBOARD_GATEWAY_URL"] = f"ws://127.0.0.1:{free_port()}"
            result = measure(folder, env)
        finally:
            redis.stop()
            pg.stop()
    report(result)


def measure(folder: Path, env: dict[str, str]) -> dict[str, Any]:
    Processes(folder, env).manage("migrate", "--noinput")
    Processes(folder, env).manage("demo_users")
    os.environ.update(env)
    import django

    django.setup()
    cookie = login_cookie()
    port = int(env["RUNBOARD_GATEWAY_URL"].rsplit(":", 1)[1])
    return asyncio.run(scenario(folder, env, cookie, port))


def report(result: dict[str, Any]) -> None:
    figures = split_figures(result["loaded"])
    base = split_figures(result["baseline"], "baseline_")
    cpu = result["cpu"]
    print(
        json.dumps(
            {
                "metric": "fanout_event_to_dom_ms",
                **figures,
                "unit": "ms",
                "event_rate_per_s": round(result["events_per_s"], 1),
                "viewers": VIEWERS,
                "browsers": 1,
                "web_workers": 2,
                "bridges": 2,
                **result["viewers"],
                **base,
                "baseline_metric": "the same probes, same stack, no load, no other viewer",
                "ratio_p99": round(figures["p99"] / base["baseline_p99"], 2)
                if base["baseline_p99"]
                else None,
                "goal": "p99 <= 100, busy_p99 <= 300, every viewer served",
                "cpu_cores": {name: round(v, 2) for name, v in sorted(cpu.items())},
                "processes_exited": result["dead"],
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
