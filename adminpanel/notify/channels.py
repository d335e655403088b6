"""Which channels a flag's notice goes to: the admin's rows plus ``RUNBOARD_NOTIFY_WEBHOOK_URL``."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from adminpanel.detect import SEVERITY_RANK
from adminpanel.notify.models import NotificationChannel, split_recipients

ENV_KEY = "env"
ENV_NAME = "RUNBOARD_NOTIFY_WEBHOOK_URL"


@dataclass(frozen=True, slots=True)
class Channel:
    key: str  # Delivery.channel_key
    pk: int | None  # None: the environment's webhook
    name: str
    kind: str  # webhook | slack | email
    url: str = ""
    recipients: tuple[str, ...] = ()
    gateway_pk: int | None = None  # None: every gateway
    min_severity: str = "warning"

    def wants(self, gateway_pk: int, severity: str) -> bool:
        if self.gateway_pk is not None and self.gateway_pk != gateway_pk:
            return False
        return SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK.get(self.min_severity, 0)


def from_row(row: NotificationChannel) -> Channel:
    return Channel(
        key=f"channel:{row.pk}",
        pk=row.pk,
        name=row.name,
        kind=row.kind,
        url=row.url,
        recipients=tuple(split_recipients(row.recipients)),
        gateway_pk=row.gateway_id,
        min_severity=row.min_severity,
    )


def env_channel() -> Channel | None:
    url = settings.RUNBOARD_NOTIFY_WEBHOOK_URL
    return Channel(ENV_KEY, None, ENV_NAME, "webhook", url=url) if url else None


def enabled_channels() -> list[Channel]:
    """Every channel a notice may go to now; one query."""
    found = [from_row(r) for r in NotificationChannel.objects.filter(enabled=True)]
    env = env_channel()
    return [*found, env] if env else found


def channel_for(key: str, row: NotificationChannel | None) -> Channel | None:
    """The channel a delivery row names, if it still exists and is enabled."""
    if key == ENV_KEY:
        return env_channel()
    if row is None or not row.enabled:
        return None
    return from_row(row)
