"""Start everything for the demo in one command: simulated gateways, bridges, web server.

The web server (daphne) and the bridges share one process and one asyncio
loop, because the in-memory channel layer only reaches consumers in its own
process. The simulated gateways run in a child process, as a real gateway
would run elsewhere; when ``RUNBOARD_GATEWAY_URL`` is set, none is started and
the bridge connects to that gateway instead. Ctrl-C (or SIGTERM) stops all of it.
"""

from __future__ import annotations

import asyncio
import ctypes
import signal
import subprocess
import sys
from typing import Any

import structlog
from django.conf import settings
from django.core.management.base import BaseCommand

from adminpanel.api_auth import give_demo_token
from adminpanel.models import Gateway

log = structlog.get_logger(__name__)

SIM_TOKEN = "sim-token"
SIM_GATEWAYS = (("sim-eu", "2026.5.28"), ("sim-us", "2026.5.3"), ("sim-next", "2026.9"))
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: if the demo dies hard, the gateways go with it."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def sim_gateway_args(base_port: int, seed: int) -> list[str]:
    args = [sys.executable, "-m", "gateway_bridge.simgateway", "--token", SIM_TOKEN]
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

    def handle(self, *args: Any, **options: Any) -> None:
        give_demo_token(settings.RUNBOARD_DEMO_API_TOKEN)
        sim: subprocess.Popen[bytes] | None = None
        if not settings.RUNBOARD_GATEWAY_URL:
            base = settings.RUNBOARD_SIM_BASE_PORT
            register_sim_gateways(base)
            sim = subprocess.Popen(
                sim_gateway_args(base, settings.RUNBOARD_DEMO_SEED), preexec_fn=_die_with_parent
            )
            log.info(
                "sim_gateways_started", pid=sim.pid, ports=f"{base}-{base + len(SIM_GATEWAYS) - 1}"
            )
        try:
            serve_with_bridges(options["port"])
        finally:
            if sim is not None:
                stop_child(sim)


def stop_child(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    log.info("sim_gateways_stopped", returncode=child.returncode)


def serve_with_bridges(port: int) -> None:
    """daphne on loopback with the bridges on the same (Twisted-asyncio) loop."""
    from daphne import server as daphne_server
    from daphne.endpoints import build_endpoint_description_strings
    from twisted.internet import defer, reactor

    from adminpanel.asgi import application
    from adminpanel.bridges import BridgeSupervisor, configured_gateways

    loop: asyncio.AbstractEventLoop = daphne_server.twisted_loop
    asyncio.set_event_loop(loop)
    supervisor = BridgeSupervisor(configured_gateways())
    stop = asyncio.Event()
    running = loop.create_task(supervisor.run(stop))

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
