"""Run the bridges for the configured gateways until SIGTERM or Ctrl-C.

A separate bridge process only reaches the browsers through a shared channel
layer: Redis (``RUNBOARD_REDIS_URL``) in a deployment, or the web process's
channel hub (``RUNBOARD_CHANNEL_HUB``), which ``manage.py demo`` sets for the
bridge process it starts. With neither, nobody sees its pushes.

Several ``runbridge`` processes share the gateways through leases in
PostgreSQL (``adminpanel/bridges/leases.py``). SQLite has one writer at a
time: a second bridge on the same SQLite database refuses to start.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
from pathlib import Path
from typing import IO, Any

import structlog
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from adminpanel.action_outcomes import mark_interrupted
from adminpanel.bridges.leases import Holder
from adminpanel.bridges.supervisor import BridgeSupervisor, configured_gateways
from runboard.backends import check_backends
from runboard.runtime import freeze_imported_objects

log = structlog.get_logger(__name__)


class Command(BaseCommand):
    help = "Mirror the configured gateways into the store until stopped."

    def handle(self, *args: Any, **options: Any) -> None:
        check_backends()
        # Attempts a killed worker or bridge left between intent and outcome.
        mark_interrupted()
        lock = self._sqlite_single_bridge()
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
        try:
            asyncio.run(self._run(BridgeSupervisor(targets, holder=Holder.this_process())))
        finally:
            if lock is not None:
                lock.close()

    def _sqlite_single_bridge(self) -> IO[str] | None:
        """On SQLite, hold a lock file beside the database for as long as this bridge runs."""
        if connection.vendor != "sqlite":
            return None
        path = Path(str(settings.DATABASES["default"]["NAME"]) + ".runbridge.lock")
        lock = open(path, "a+")  # noqa: SIM115 - held open until the bridge stops
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            other = lock.read().strip() or "another process"
            lock.close()
            raise CommandError(
                f"another bridge ({other}) is already running on the SQLite database "
                f"{settings.DATABASES['default']['NAME']}: SQLite takes one writer, so one "
                "bridge. Run several bridges on PostgreSQL (RUNBOARD_DATABASE_URL=postgres://…), "
                "where they share the gateways."
            ) from None
        lock.truncate(0)
        lock.write(f"pid {os.getpid()}")
        lock.flush()
        return lock

    async def _run(self, supervisor: BridgeSupervisor) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await supervisor.run(stop)
