"""``manage.py prune [--days N] [--batch N] [--dry-run] [--loop --every SECONDS]``.

Deletes timeline events, skips and cleared flags older than the retention
(``adminpanel.retention``) and says what went, per table; blanks users' message
texts kept for requeue once requeued or older than ``RUNBOARD_MESSAGE_TEXT_DAYS``.
With ``--loop`` it runs until SIGTERM, once every ``--every`` seconds, so a
deployment can keep it beside the bridges; each step is a method the tests
call directly.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import structlog
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from adminpanel import retention

log = structlog.get_logger(__name__)

# How often the loop looks whether SIGTERM came while it waits for the next run.
WAKE_S = 0.5
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def whole_number(option: str, value: Any, minimum: int) -> int:
    """``value`` as an int of at least ``minimum``, or a CommandError naming ``option``."""
    number: int | None
    try:
        number = int(str(value).strip())
    except ValueError:
        number = None
    if number is None or number < minimum:
        raise CommandError(f"{option} must be a whole number, at least {minimum}; got {value!r}")
    return number


def describe_texts(texts: retention.TextsDropped) -> str:
    verb = "would be dropped" if texts.dry_run else "dropped"
    return (
        f"message texts: {texts.dropped} {verb} ({texts.requeued} requeued, "
        f"{texts.aged} from before {texts.cutoff.isoformat()})"
    )


def describe(result: retention.PruneResult) -> list[str]:
    """The lines the command prints: the cutoff, then one line per table."""
    verb = "would be deleted" if result.dry_run else "deleted"
    lines = [f"{'dry run: ' if result.dry_run else ''}cutoff {result.cutoff.isoformat()}"]
    for label, pruned in result.tables.items():
        batches = f" in {pruned.batches} batch{'es' if pruned.batches != 1 else ''}"
        lines.append(f"{label}: {pruned.deleted} {verb}{batches if pruned.deleted else ''}")
    if not result.dry_run and result.deleted:
        lines.append(f"longest batch: {result.longest_batch_ms:.0f} ms")
    return lines


class Command(BaseCommand):
    help = (
        "Delete timeline events, dispatch skips and cleared flags older than "
        "RUNBOARD_RETENTION_DAYS, in small batches. Audit entries are never deleted. "
        "Message texts kept for requeue are blanked once requeued or after "
        "RUNBOARD_MESSAGE_TEXT_DAYS."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.days: int | None = None  # None: the settings' value at each run
        self.batch: int | None = None
        self.dry_run = False
        self.stopping = False
        self.clock = timezone.now

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days", default=None, help="keep this many days (default RUNBOARD_RETENTION_DAYS)"
        )
        parser.add_argument(
            "--batch", default=None, help="rows per transaction (default RUNBOARD_PRUNE_BATCH)"
        )
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")
        parser.add_argument("--loop", action="store_true", help="prune again until SIGTERM")
        parser.add_argument(
            "--every", default="3600", help="with --loop: seconds between runs (default 3600)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"]
        batch = options["batch"]
        self.days = whole_number("--days", days, 1) if days is not None else None
        self.batch = whole_number("--batch", batch, 1) if batch is not None else None
        self.dry_run = bool(options["dry_run"])
        if not options["loop"]:
            self.prune_once()
            return
        every = whole_number("--every", options["every"], 1)
        previous = {sig: signal.signal(sig, self.on_signal) for sig in STOP_SIGNALS}
        log.info("prune_loop_started", every_s=every)
        try:
            while not self.stopping:
                self.prune_once()
                self.wait(every)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.info("prune_loop_stopped")

    def on_signal(self, *args: Any) -> None:
        self.stopping = True

    def prune_once(self) -> bool:
        """Prune once with today's settings; True when rows went (or would go, dry run)."""
        days = self.days or settings.RUNBOARD_RETENTION_DAYS
        batch = self.batch or settings.RUNBOARD_PRUNE_BATCH
        now = self.clock()
        pause_s = retention.default_pause_s()
        if self.dry_run:
            result = retention.prunable(now, days, batch)
        else:
            result = retention.prune(now, days, batch, pause_s=pause_s)
        texts = retention.drop_message_texts(
            now, settings.RUNBOARD_MESSAGE_TEXT_DAYS, batch, dry_run=self.dry_run, pause_s=pause_s
        )
        self.stdout.write("\n".join([*describe(result), describe_texts(texts)]))
        self.stdout.flush()  # a loop's output reaches the journal as it happens
        return result.deleted + texts.dropped > 0

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on SIGTERM; True when the loop should go on."""
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(WAKE_S, max(0.0, deadline - time.monotonic())))
        return not self.stopping
