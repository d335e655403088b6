"""``manage.py sendnotices [--once]``: send due notices until SIGTERM, without the bridges.

The bridge supervisor runs the same dispatcher; this command is for a
deployment that wants notices sent by a process of their own (or a cron's ``--once``).
"""

from __future__ import annotations

import signal
import time
from typing import Any

import structlog
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from adminpanel.notify.dispatcher import Dispatcher

log = structlog.get_logger(__name__)


class Command(BaseCommand):
    help = "Send the notices that are due (flags raised, reminders, cleared); loop until SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Send what is due, then exit.")

    def on_sigterm(self, *_: Any) -> None:
        self.stopping = True

    def handle(self, *args: Any, once: bool = False, **options: Any) -> None:
        self.stopping = False
        dispatcher = Dispatcher()
        if once:
            dispatcher.step()
            return
        signal.signal(signal.SIGTERM, self.on_sigterm)
        signal.signal(signal.SIGINT, self.on_sigterm)
        log.info("sendnotices_started")
        while not self.stopping:
            if not dispatcher.step():
                time.sleep(settings.RUNBOARD_NOTIFY_TICK_S)
        log.info("sendnotices_stopped")
