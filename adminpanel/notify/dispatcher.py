"""Sending what is due: one delivery at a time, claimed first, retried with backoff.

``Dispatcher``'s steps are plain methods returning whether they did something
(tests call them with their own ``now``); ``run`` loops them in a worker
thread next to the bridges, so a slow receiver never holds ingest's thread;
``manage.py sendnotices`` loops them on its own. Several dispatchers may run:
each claims a row by compare-and-set before sending it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from adminpanel.notify import notice, outbox
from adminpanel.notify.channels import Channel, channel_for
from adminpanel.notify.models import Delivery
from adminpanel.notify.senders import SendFailed, post_json, send_email

log = structlog.get_logger(__name__)

# After the nth failed attempt, wait RETRY_DELAYS_S[n - 1]; past the last, give up.
RETRY_DELAYS_S = (10.0, 60.0, 300.0)
# How long a claimed row is left alone by other dispatchers: well past one call's timeout.
CLAIM_S = 60.0


def send(channel: Channel, n: notice.Notice, timeout: float) -> None:
    if channel.kind == "email":
        subject, body = notice.email_parts(n)
        send_email(channel.recipients, subject, body, timeout)
    elif channel.kind == "slack":
        post_json(channel.url, notice.slack_payload(n), timeout)
    else:
        post_json(channel.url, notice.webhook_payload(n), timeout)


class Dispatcher:
    def __init__(self, clock: Callable[[], datetime] = timezone.now) -> None:
        self.clock = clock

    def remind(self, now: datetime | None = None) -> bool:
        """Queue the reminders now due; True if there were any."""
        return outbox.queue_reminders(now or self.clock()) > 0

    def send_one(self, now: datetime | None = None) -> bool:
        """Attempt the oldest due delivery; False when none is due."""
        now = now or self.clock()
        due = (
            Delivery.objects.filter(status="pending", next_attempt_at__lte=now)
            .order_by("next_attempt_at", "pk")
            .select_related("channel", "flag__session__gateway")
            .first()
        )
        if due is None:
            return False
        if self._claim(due, now):
            self._attempt(due, now)
        return True

    def step(self, now: datetime | None = None) -> bool:
        """Reminders, then everything due; True if anything happened."""
        now = now or self.clock()
        did = self.remind(now)
        while self.send_one(now):
            did = True
        return did

    def _claim(self, d: Delivery, now: datetime) -> bool:
        claimed = Delivery.objects.filter(
            pk=d.pk, status="pending", attempts=d.attempts, next_attempt_at=d.next_attempt_at
        ).update(next_attempt_at=now + timedelta(seconds=CLAIM_S))
        return claimed == 1

    def _attempt(self, d: Delivery, now: datetime) -> None:
        channel = channel_for(d.channel_key, d.channel)
        if channel is None:
            self._finish(d, "cancelled", "the channel was removed or disabled")
            return
        try:
            send(channel, notice.build(d.kind, d.flag), settings.RUNBOARD_NOTIFY_TIMEOUT_S)
        except SendFailed as exc:
            self._failed(d, now, str(exc), exc.retryable)
            return
        Delivery.objects.filter(pk=d.pk).update(
            status="sent", attempts=d.attempts + 1, sent_at=now, next_attempt_at=None
        )
        log.info("notice_sent", **_context(d), attempts=d.attempts + 1)

    def _failed(self, d: Delivery, now: datetime, error: str, retryable: bool) -> None:
        attempts = d.attempts + 1
        if retryable and attempts <= len(RETRY_DELAYS_S):
            retry_at = now + timedelta(seconds=RETRY_DELAYS_S[attempts - 1])
            Delivery.objects.filter(pk=d.pk).update(
                attempts=attempts, last_error=error, next_attempt_at=retry_at
            )
            log.warning("notice_failed", **_context(d), attempts=attempts, error=error)
            return
        Delivery.objects.filter(pk=d.pk).update(
            status="failed", attempts=attempts, last_error=error, next_attempt_at=None
        )
        log.warning("notice_gave_up", **_context(d), attempts=attempts, error=error)

    def _finish(self, d: Delivery, status: str, error: str) -> None:
        Delivery.objects.filter(pk=d.pk).update(
            status=status, last_error=error, next_attempt_at=None
        )
        log.warning("notice_dropped", **_context(d), error=error)


def _context(d: Delivery) -> dict[str, object]:
    return {
        "delivery_id": d.pk,
        "channel": d.channel_name,
        "kind": d.kind,
        "flag_code": d.flag.code,
        "session_key": d.flag.session.session_key,
        "gateway": d.flag.session.gateway.name,
    }


def _step_in_thread(dispatcher: Dispatcher) -> bool:
    try:
        return dispatcher.step()
    finally:
        close_old_connections()


async def run(stop: asyncio.Event, *, tick_s: float | None = None) -> None:
    """Send due notices until ``stop`` is set; each step in a worker thread, never ingest's.

    For the bridge supervisor: ``asyncio.create_task(dispatcher.run(stop))``.
    """
    tick = settings.RUNBOARD_NOTIFY_TICK_S if tick_s is None else tick_s
    dispatcher = Dispatcher()
    step = sync_to_async(_step_in_thread, thread_sensitive=False)
    while not stop.is_set():
        try:
            await step(dispatcher)
        except Exception:  # a bad step must not end notifications for good
            log.exception("notify_step_failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), tick)
