from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from adminpanel.models import Gateway
from tests.notify.receivers import HttpReceiver, Mailbox, http_receiver, smtp_server


@pytest.fixture(autouse=True)
def _notify_settings(settings: Any) -> None:
    settings.RUNBOARD_NOTIFY_WEBHOOK_URL = ""
    settings.RUNBOARD_NOTIFY_TIMEOUT_S = 0.5
    settings.RUNBOARD_NOTIFY_REMIND_AFTER_S = 3600.0
    settings.RUNBOARD_PUBLIC_URL = "https://runboard.example"


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with http_receiver() as r:
        yield r


@pytest.fixture
def mailbox(settings: Any) -> Iterator[Mailbox]:
    with smtp_server() as box:
        settings.MAILERS = {
            "default": {
                "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                "OPTIONS": {"host": "127.0.0.1", "port": box.port, "timeout": 0.5},
            }
        }
        settings.DEFAULT_FROM_EMAIL = "runboard@example.org"
        yield box


@pytest.fixture
def gateway(db: None) -> Gateway:
    return Gateway.objects.create(name="gw-eu")
