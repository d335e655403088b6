"""db_queries_per_s_per_viewer: database queries per second caused by viewers, at 1 and 100.

The demo's topology: the web server (daphne) in its own process, and the
bridge in the web server's child process (``manage.py runbridge`` reaching
the web process's channel layer through the hub), exactly as ``manage.py
demo`` runs them by default (``serve`` below calls the demo's
``serve_with_bridges``, with two additions). Viewers only cause work in the
web process, so that is where queries are counted: every database connection
the web process opens counts each query it executes, attributed by a context
variable to what caused it: work done for a WebSocket connection
(``viewer``: its consumer, the session lookup at connect), an HTTP request
(``http``) or anything else in that process (``server``). The bridge
process's queries (ingest, the detect tick, the broadcaster's renders) are
not counted: they are the same whoever watches, and a viewer never causes
one. A simulated gateway (2026.9) emits a steady stream of changes, so the
viewers receive pushes all along; the rate it emitted in each window is
measured and printed (``events_per_s``).

A window of ``WINDOW_S`` seconds is measured with 1 viewer connected, then
one with 100 (connected before their window starts; the one-time lookups at
connect are reported apart). ``value`` is the viewers' queries per second per
viewer at 100 viewers, ``baseline`` the same at 1 viewer. Goal: the same
(zero: the rows are rendered once per change, whoever watches). The total
queries per second of the server are reported for both windows too.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.event_to_dom import (
    FAST,
    GATEWAY,
    SIM_TOKEN,
    Load,
    Server,
    Viewers,
    login_cookie,
    viewers_served,
)
from bench.support import setup_django

EVENTS_PER_S = 200  # what the load aims at; the rate printed is measured
LOAD_SESSIONS = 24
WINDOW_S = 10.0
COUNTS_FILE = "query_counts.json"

ORIGIN: contextvars.ContextVar[str] = contextvars.ContextVar("origin", default="server")


# --- the server process ---------------------------------------------------------------


def serve(port: int) -> None:
    """Run the app with the bridge like the demo does, counting queries by origin."""
    import django

    django.setup()
    from django.db.backends.signals import connection_created

    import runboard.asgi
    from adminpanel.management.commands.demo import serve_with_bridges

    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def counting(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        with lock:
            counts[ORIGIN.get()] += 1
        return execute(sql, params, many, context)

    def on_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
        if counting not in connection.execute_wrappers:
            connection.execute_wrappers.append(counting)

    connection_created.connect(on_connection, weak=False)
    inner = runboard.asgi.application

    async def attributed(scope: Any, receive: Any, send: Any) -> None:
        token = ORIGIN.set("viewer" if scope["type"] == "websocket" else scope["type"])
        try:
            await inner(scope, receive, send)
        finally:
            ORIGIN.reset(token)

    runboard.asgi.application = attributed  # type: ignore[assignment]
    target = Path(os.environ["RUNBOARD_VAR_DIR"]) / COUNTS_FILE

    def report() -> None:
        while True:
            with lock:
                snapshot = dict(counts)
            snapshot["t"] = time.time()  # type: ignore[assignment]
            scratch = target.with_suffix(".tmp")
            scratch.write_text(json.dumps(snapshot))
            scratch.replace(target)
            time.sleep(0.1)

    threading.Thread(target=report, daemon=True, name="query-counts").start()
    # The demo's default: the bridge in a child process of its own (not counted here).
    serve_with_bridges(port)


# --- the measurement ------------------------------------------------------------------


def read_counts(workdir: Path) -> dict[str, float]:
    for _ in range(50):
        try:
            return dict(json.loads((workdir / COUNTS_FILE).read_text()))
        except (OSError, ValueError):
            time.sleep(0.05)
    raise SystemExit("the server reports no query counts")


async def window(
    workdir: Path, server: Server, cookie: tuple[str, str], viewers: int, load: Load
) -> dict[str, Any]:
    before_connect = read_counts(workdir)
    watching = Viewers([server.url], cookie, viewers)
    await watching.start()
    await asyncio.sleep(1.0)
    start, marked, emitted = read_counts(workdir), await watching.mark(), load.emitted
    await asyncio.sleep(WINDOW_S)
    end, marks, emitted = read_counts(workdir), await watching.mark(), load.emitted - emitted
    received = await watching.stop()
    seconds = end["t"] - start["t"]

    def rate(origin: str) -> float:
        return (end.get(origin, 0) - start.get(origin, 0)) / seconds

    served = viewers_served(marked, marks, received)
    return {
        "viewer_q_per_s": rate("viewer"),
        "server_q_per_s": rate("server") + rate("http"),
        "connect_queries_per_viewer": (start.get("viewer", 0) - before_connect.get("viewer", 0))
        / viewers,
        "messages_per_s_per_viewer": served["viewer_messages_min"] / seconds,
        "events_per_s": emitted / seconds,
        "served": served,
    }


async def scenario(workdir: Path, cookie: tuple[str, str]) -> dict[int, dict[str, Any]]:
    from simgateway.server import SimGateway

    gateway = SimGateway(name=GATEWAY, profile="2026.9", token=SIM_TOKEN, **FAST)  # type: ignore[arg-type]
    await gateway.start()
    server = Server(workdir, gateway.url, ["-m", "bench.viewer_queries", "serve"])
    stop = asyncio.Event()
    try:
        await server.start()
        keys = [f"agent:load:slack:direct:load-{n}" for n in range(LOAD_SESSIONS)]
        load = Load(gateway, keys, EVENTS_PER_S)
        await load.calibrate()
        loading = asyncio.create_task(load.run(stop))
        results = {n: await window(workdir, server, cookie, n, load) for n in (1, 100)}
        stop.set()
        await loading
    finally:
        stop.set()
        await server.stop()
        await gateway.stop()
    return results


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="runboard-bench-") as workdir:
        setup_django(Path(workdir))
        cookie = login_cookie()
        results = asyncio.run(scenario(Path(workdir), cookie))
    one, many = results[1], results[100]
    value = many["viewer_q_per_s"] / 100
    baseline = one["viewer_q_per_s"]
    ratio = round(value / baseline, 2) if baseline else (1.0 if value == baseline else None)
    print(
        json.dumps(
            {
                "metric": "db_queries_per_s_per_viewer",
                "value": round(value, 3),
                "unit": "queries/s per viewer (100 viewers)",
                "baseline": round(baseline, 3),
                "baseline_metric": "queries/s per viewer (1 viewer)",
                "ratio": ratio,
                "server_q_per_s_1_viewer": round(one["server_q_per_s"], 1),
                "server_q_per_s_100_viewers": round(many["server_q_per_s"], 1),
                "connect_queries_per_viewer": round(many["connect_queries_per_viewer"], 1),
                "messages_per_s_per_viewer": round(many["messages_per_s_per_viewer"], 1),
                # Measured: the registry events the gateway emitted in each window.
                "events_per_s": round(many["events_per_s"], 1),
                "events_per_s_1_viewer": round(one["events_per_s"], 1),
                **many["served"],
                "topology": "manage.py demo: web process, bridge in its child process",
                "goal": "the same at 1 and 100 viewers",
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(int(sys.argv[sys.argv.index("--port") + 1]))
    else:
        main()
