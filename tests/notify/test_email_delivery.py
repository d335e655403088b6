"""Sending by email through a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from adminpanel.models import Gateway
from adminpanel.notify.dispatcher import Dispatcher
from adminpanel.notify.models import Delivery
from tests.notify.receivers import Mailbox, closed_port
from tests.notify.support import (
    KEY,
    NOW,
    clear_flag,
    make_channel,
    make_flag,
    make_session,
    raise_flag,
)

pytestmark = pytest.mark.django_db


def parsed(raw: bytes | None) -> EmailMessage:
    message = message_from_bytes(raw or b"", policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_an_email_channel_mails_every_recipient(gateway: Gateway, mailbox: Mailbox) -> None:
    make_channel("email", recipients="ops@example.org,\noncall@example.org")
    flag = make_flag(make_session(gateway))
    raise_flag(flag)
    assert Dispatcher().step(NOW)
    [envelope] = mailbox.messages
    assert envelope.rcpt_tos == ["ops@example.org", "oncall@example.org"]
    assert envelope.mail_from == "runboard@example.org"
    message = parsed(envelope.original_content)
    assert message["Subject"] == f"[Runboard] Critical: terminal_but_held on gw-eu · {KEY}"
    body = message.get_content()
    assert "ended aborted" in body and "Suggested action:" in body
    assert f"https://runboard.example/sessions/{flag.session_id}/" in body
    assert Delivery.objects.get().status == "sent"


def test_the_clearing_email_says_resolved(gateway: Gateway, mailbox: Mailbox) -> None:
    make_channel("email", recipients="ops@example.org")
    flag = make_flag(make_session(gateway))
    raise_flag(flag)
    clear_flag(flag, NOW + timedelta(minutes=1))
    Dispatcher().step(NOW + timedelta(minutes=1))
    subjects = [parsed(e.original_content)["Subject"] for e in mailbox.messages]
    assert subjects[1].startswith("[Runboard] Resolved: terminal_but_held")


def test_an_smtp_server_that_is_down_costs_a_retry(gateway: Gateway, settings: Any) -> None:
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": closed_port(), "timeout": 0.5},
        }
    }
    make_channel("email", recipients="ops@example.org")
    raise_flag(make_flag(make_session(gateway)))
    Dispatcher().step(NOW)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert delivery.last_error.startswith("SMTP:")
