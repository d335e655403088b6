"""Where notices go (``NotificationChannel``, edited in the admin) and every attempt to send one.

Imported by ``adminpanel.models`` so Django finds them as the app's models.
``Delivery`` rows are written only by ``adminpanel.notify``: inserted inside
ingest's transaction when a flag is raised or cleared, then moved along by the
dispatcher (``adminpanel.notify.dispatcher``).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models

from adminpanel.models import Flag, Gateway

KINDS = ("webhook", "slack", "email")
NOTICE_KINDS = ("raised", "reminder", "cleared")
STATUSES = ("pending", "sent", "failed", "cancelled")


def split_recipients(text: str) -> list[str]:
    """Addresses separated by commas or new lines."""
    return [a.strip() for a in text.replace("\n", ",").split(",") if a.strip()]


class NotificationChannel(models.Model):
    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(
        max_length=16,
        choices=[
            ("webhook", "webhook (JSON POST)"),
            ("slack", "Slack-compatible incoming webhook"),
            ("email", "email"),
        ],
    )
    url = models.URLField(
        max_length=500, blank=True, help_text="For webhook and Slack: where to POST."
    )
    recipients = models.TextField(
        blank=True, help_text="For email: addresses separated by commas or new lines."
    )
    gateway = models.ForeignKey(
        Gateway,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notification_channels",
        help_text="Blank: every gateway.",
    )
    min_severity = models.CharField(
        max_length=16,
        default="warning",
        choices=[(s, s) for s in Flag.SEVERITIES],
        help_text="Flags below this severity are not sent here.",
    )
    enabled = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.kind in ("webhook", "slack") and not self.url:
            raise ValidationError({"url": "A webhook needs the URL to POST to."})
        if self.kind == "email":
            addresses = split_recipients(self.recipients)
            if not addresses:
                raise ValidationError({"recipients": "An email channel needs recipients."})
            for address in addresses:
                validate_email(address)


class Delivery(models.Model):
    """One notice for one flag to one channel, and how sending it went."""

    flag = models.ForeignKey(Flag, on_delete=models.CASCADE, related_name="deliveries")
    # Null with channel_key "env": the webhook of RUNBOARD_NOTIFY_WEBHOOK_URL.
    channel = models.ForeignKey(
        NotificationChannel,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deliveries",
    )
    channel_key = models.CharField(max_length=32)  # "env" or "channel:<pk>": unique with NULLs
    channel_name = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, choices=[(k, k) for k in NOTICE_KINDS])
    round = models.PositiveIntegerField(default=0)  # the nth reminder; 0 otherwise
    status = models.CharField(max_length=16, default="pending", choices=[(s, s) for s in STATUSES])
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["flag", "channel_key", "kind", "round"], name="one_notice_per_flag"
            )
        ]
        indexes = [
            # The dispatcher: pending rows whose time has come.
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.flag_id} → {self.channel_name}"
