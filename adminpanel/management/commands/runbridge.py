"""Run the bridges for the configured gateways until SIGTERM or Ctrl-C.

A separate bridge process only reaches the browsers through a shared channel
layer: Redis (``RUNBOARD_REDIS_URL``) in a deployment, or the web process's
channel hub (``RUNBOARD_CHANNEL_HUB``), which ``manage.py demo`` sets for the
bridge process it starts. With neither, nobody sees its pushes.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import structlog
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from adminpanel.bridges.supervisor import BridgeSupervisor, configured_gateways
from runboard.runtime import freeze_imported_objects

log = structlog.get_logger(__name__)


class Command(BaseCommand):
    help = "Mirror the configured gateways into the store until stopped."

    def handle(self, *args: Any, **options: Any) -> None:
        targets = configured_gateways()
        if not targets:
            raise CommandError(
                "no gateway configured: set RUNBOARD_GATEWAY_URL (and RUNBOARD_GATEWAY_TOKEN) "
                "or add an enabled gateway in the admin"
            )
        if not settings.REDIS_URL and not settings.CHANNEL_HUB:
            log.warning(
                "channel_layer_not_shared",
                detail="in-memory channel layer: browsers connected to another process "
                "will not see live updates; set RUNBOARD_REDIS_URL or use manage.py demo",
            )
        freeze_imported_objects()
        asyncio.run(self._run(BridgeSupervisor(targets)))

    async def _run(self, supervisor: BridgeSupervisor) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await supervisor.run(stop)
