"""Start everything for the demo in one command: simulated gateways, bridges, web server.

The web server (daphne) runs here; the bridges run in a child process
(``manage.py runbridge``) that reaches this process's in-memory channel layer
through the channel hub (``adminpanel/bridges/child_process.py``), so ingest does not
share a GIL with the viewers' sockets. ``--bridge inline`` runs them on the
web server's own loop instead, as before. The simulated gateways run in a
child process, as a real gateway would run elsewhere; when
``RUNBOARD_GATEWAY_URL`` is set, none is started and the bridge connects to
that gateway instead. Ctrl-C (or SIGTERM) stops all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from typing import Any

import structlog
from django.conf import settings
from django.core.management.base import BaseCommand

from adminpanel.action_outcomes import mark_interrupted
from adminpanel.api.tokens import give_demo_token
from adminpanel.bridges.child_process import die_with_parent, stop_process
from adminpanel.bridges.supervisor import BridgeSupervisor, GatewayTarget, configured_gateways
from adminpanel.models import Gateway

log = structlog.get_logger(__name__)

SIM_TOKEN = "sim-token"
# The demo's hung sessions should read "stuck" within a minute of its start: unless
# RUNBOARD_STUCK_AFTER_S is set, the demo flags no_progress after 45 s, not 120 s.
DEMO_STUCK_AFTER_S = "45"
SIM_GATEWAYS = (("sim-eu", "2026.5.28"), ("sim-us", "2026.5.3"), ("sim-next", "2026.9"))


def sim_gateway_args(base_port: int, seed: int) -> list[str]:
    args = [sys.executable, "-m", "simgateway", "--token", SIM_TOKEN]
    for offset, (name, profile) in enumerate(SIM_GATEWAYS):
        args += ["--gateway", f"{name}={profile}:{base_port + offset}"]
    return [*args, "--workload", "demo", "--seed", str(seed)]


def register_sim_gateways(base_port: int) -> None:
    for offset, (name, _profile) in enumerate(SIM_GATEWAYS):
        Gateway.objects.update_or_create(
            name=name,
            defaults={
                "url": f"ws://127.0.0.1:{base_port + offset}",
                "token": SIM_TOKEN,
                "enabled": True,
            },
        )


class Command(BaseCommand):
    help = "Run the demo: simulated gateways, the bridges and the web server, until Ctrl-C."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--port", type=int, default=settings.RUNBOARD_DEMO_PORT)
        parser.add_argument(
            "--bridge",
            choices=("process", "inline"),
            default="process",
            help="run the bridges in a child process (default) or on the web server's loop",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not os.environ.get("RUNBOARD_STUCK_AFTER_S"):
            os.environ["RUNBOARD_STUCK_AFTER_S"] = DEMO_STUCK_AFTER_S  # the bridge process's
            settings.RUNBOARD_STUCK_AFTER_S = float(DEMO_STUCK_AFTER_S)  # --bridge inline's
        give_demo_token(settings.RUNBOARD_DEMO_API_TOKEN)
        mark_interrupted()  # actions a killed demo left between intent and outcome
        sim: subprocess.Popen[bytes] | None = None
        if not settings.RUNBOARD_GATEWAY_URL:
            base = settings.RUNBOARD_SIM_BASE_PORT
            register_sim_gateways(base)
            sim = subprocess.Popen(
                sim_gateway_args(base, settings.RUNBOARD_DEMO_SEED), preexec_fn=die_with_parent
            )
            log.info(
                "sim_gateways_started", pid=sim.pid, ports=f"{base}-{base + len(SIM_GATEWAYS) - 1}"
            )
        try:
            serve_with_bridges(options["port"], inline=options["bridge"] == "inline")
        finally:
            if sim is not None:
                stop_child(sim)


def stop_child(child: subprocess.Popen[bytes]) -> None:
    stop_process(child)
    log.info("sim_gateways_stopped", returncode=child.returncode)


async def keep_inline(targets: list[GatewayTarget], stop: asyncio.Event) -> None:
    """``--bridge inline``: the bridges on the web server's loop, started again if they crash."""
    pause = 1.0
    while not stop.is_set():
        try:
            await BridgeSupervisor(targets).run(stop)
        except Exception:
            log.exception("inline_bridges_crashed", restart_in_s=pause)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
            pause = min(pause * 2, 30.0)


def serve_with_bridges(port: int, *, inline: bool = False) -> None:
    """daphne on loopback; the bridges in a child process, or ``inline`` on daphne's loop."""
    from channels.layers import get_channel_layer
    from daphne import server as daphne_server
    from daphne.endpoints import build_endpoint_description_strings
    from twisted.internet import defer, reactor

    from adminpanel.bridges.child_process import BridgeProcess
    from runboard.asgi import application

    loop: asyncio.AbstractEventLoop = daphne_server.twisted_loop
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()
    if inline:
        running = loop.create_task(keep_inline(configured_gateways(), stop))
    else:
        running = loop.create_task(BridgeProcess(get_channel_layer()).run(stop))

    def before_shutdown() -> defer.Deferred[None]:
        stop.set()
        return defer.Deferred.fromFuture(running)

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)  # type: ignore[attr-defined,arg-type]
    log.info("web_server_starting", url=f"http://127.0.0.1:{port}/")
    daphne_server.Server(
        application=application,
        endpoints=build_endpoint_description_strings(host="127.0.0.1", port=port),
        signal_handlers=True,
        verbosity=0,
    ).run()
