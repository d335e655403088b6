"""``manage.py runweb``: one web worker (daphne) for a deployment, after checking its backends.

A deployment runs several of these behind its proxy (docs/deploy.md). Before
it listens, the worker checks that the database and Redis its settings name
answer, so a wrong URL or password stops it at once with one line naming the
setting instead of failing the first visitor's request.
"""

from __future__ import annotations

from typing import Any

import structlog
from django.core.management.base import BaseCommand, CommandParser

from adminpanel.action_outcomes import mark_interrupted
from runboard.backends import check_backends
from runboard.env import SettingError
from runboard.runtime import freeze_imported_objects

log = structlog.get_logger(__name__)


class Command(BaseCommand):
    help = "Serve the web console (pages, API, live sockets) with daphne until SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--host", default="127.0.0.1", help="address to bind (default loopback)"
        )
        parser.add_argument("--port", type=_port, default=8000)

    def handle(self, *args: Any, **options: Any) -> None:
        check_backends()
        # Attempts a killed worker or bridge left between intent and outcome.
        mark_interrupted()
        from daphne import server as daphne_server
        from daphne.endpoints import build_endpoint_description_strings

        from runboard.asgi import application

        freeze_imported_objects()
        log.info("web_worker_starting", host=options["host"], port=options["port"])
        daphne_server.Server(
            application=application,
            endpoints=build_endpoint_description_strings(
                host=options["host"], port=options["port"]
            ),
            signal_handlers=True,
            verbosity=0,
            # A proxy in front: trust its X-Forwarded-For for the client address.
            proxy_forwarded_address_header="X-Forwarded-For",
            proxy_forwarded_port_header="X-Forwarded-Port",
            proxy_forwarded_proto_header="X-Forwarded-Proto",
        ).run()


def _port(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise SettingError(f"--port={raw!r}: expected a port between 1 and 65535")
    return int(raw)
