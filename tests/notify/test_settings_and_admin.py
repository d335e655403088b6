"""The notification settings refuse bad values; the admin edits channels and shows deliveries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from adminpanel.models import Gateway
from adminpanel.notify.models import Delivery, NotificationChannel
from tests.notify.support import make_channel, make_flag, make_session, raise_flag

ROOT = Path(__file__).resolve().parents[2]


def test_a_notify_webhook_that_is_not_an_http_url_stops_manage_py(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "RUNBOARD_NOTIFY_WEBHOOK_URL": "hooks.example.org/runboard",
        "RUNBOARD_VAR_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "RUNBOARD_NOTIFY_WEBHOOK_URL='hooks.example.org/runboard'" in result.stderr
    assert "expected a URL starting with http:// or https://" in result.stderr


@pytest.mark.django_db
def test_a_webhook_channel_needs_a_url_and_an_email_channel_valid_recipients() -> None:
    with pytest.raises(ValidationError, match="URL"):
        NotificationChannel(name="hook", kind="webhook").full_clean()
    with pytest.raises(ValidationError):
        NotificationChannel(name="mail", kind="email", recipients="ops@, x").full_clean()
    NotificationChannel(name="mail", kind="email", recipients="ops@example.org").full_clean()


@pytest.mark.django_db
def test_an_admin_adds_a_channel_and_reads_deliveries_but_cannot_change_them(
    admin_client: Client, gateway: Gateway
) -> None:
    response = admin_client.post(
        "/admin/adminpanel/notificationchannel/add/",
        {"name": "oncall", "kind": "slack", "url": "https://hooks.example.org/T/B/x",
         "recipients": "", "gateway": gateway.pk, "min_severity": "critical", "enabled": "on"},
    )  # fmt: skip
    assert response.status_code == 302, response.content
    channel = NotificationChannel.objects.get(name="oncall")
    assert (channel.gateway, channel.min_severity) == (gateway, "critical")

    make_channel("webhook", "http://127.0.0.1:9/hook")
    raise_flag(make_flag(make_session(gateway)))
    delivery = Delivery.objects.get(channel_name="webhook")
    page = admin_client.get("/admin/adminpanel/delivery/")
    assert page.status_code == 200 and b"webhook" in page.content
    detail = admin_client.get(f"/admin/adminpanel/delivery/{delivery.pk}/change/")
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content  # read-only
    assert admin_client.get("/admin/adminpanel/delivery/add/").status_code == 403
