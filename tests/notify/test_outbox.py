"""Which notices are queued: one per flag and channel, reminders, clearing notices."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from adminpanel.models import Gateway
from adminpanel.notify import outbox
from adminpanel.notify.models import Delivery
from tests.notify.support import (
    NOW,
    clear_flag,
    make_channel,
    make_flag,
    make_session,
    raise_flag,
)

pytestmark = pytest.mark.django_db


def kinds() -> list[tuple[str, str, int, str]]:
    return sorted(Delivery.objects.values_list("channel_name", "kind", "round", "status"))


def test_a_raised_flag_queues_one_notice_per_matching_channel(gateway: Gateway) -> None:
    make_channel("webhook", "http://127.0.0.1:9/a", name="all")
    make_channel("slack", "http://127.0.0.1:9/b", name="this-gateway", gateway=gateway)
    other = Gateway.objects.create(name="gw-us")
    make_channel("webhook", "http://127.0.0.1:9/c", name="other-gateway", gateway=other)
    make_channel("webhook", "http://127.0.0.1:9/d", name="disabled", enabled=False)
    flag = make_flag(make_session(gateway))
    raise_flag(flag)
    assert kinds() == [("all", "raised", 0, "pending"), ("this-gateway", "raised", 0, "pending")]


def test_raising_the_same_flag_again_queues_no_duplicate(gateway: Gateway) -> None:
    make_channel("webhook", "http://127.0.0.1:9/a")
    flag = make_flag(make_session(gateway))
    for _ in range(3):
        raise_flag(flag)
    assert Delivery.objects.count() == 1


def test_a_channel_with_a_higher_minimum_severity_skips_warnings(gateway: Gateway) -> None:
    make_channel("webhook", "http://127.0.0.1:9/a", name="critical-only", min_severity="critical")
    session = make_session(gateway)
    raise_flag(make_flag(session, code="unbounded_waiter", severity="warning"))
    assert not Delivery.objects.exists()
    raise_flag(make_flag(session, code="terminal_but_held", severity="critical"))
    assert kinds() == [("critical-only", "raised", 0, "pending")]


def test_the_environment_webhook_gets_every_gateway_without_a_channel_row(
    gateway: Gateway, settings: Any
) -> None:
    settings.RUNBOARD_NOTIFY_WEBHOOK_URL = "http://127.0.0.1:9/env"
    raise_flag(make_flag(make_session(gateway)))
    delivery = Delivery.objects.get()
    assert (delivery.channel_id, delivery.channel_key, delivery.channel_name) == (
        None,
        "env",
        "RUNBOARD_NOTIFY_WEBHOOK_URL",
    )


def test_no_channel_at_all_queues_nothing(gateway: Gateway) -> None:
    raise_flag(make_flag(make_session(gateway)))
    assert not Delivery.objects.exists()


def test_nothing_raised_or_cleared_costs_no_query(django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(0):
        outbox.flags_changed([], [], NOW.timestamp())


def test_a_cleared_flag_queues_a_clearing_notice_only_where_the_raising_one_went(
    gateway: Gateway,
) -> None:
    make_channel("webhook", "http://127.0.0.1:9/a", name="before")
    flag = make_flag(make_session(gateway))
    raise_flag(flag)
    make_channel("webhook", "http://127.0.0.1:9/b", name="added-later")
    clear_flag(flag, NOW + timedelta(minutes=2))
    assert kinds() == [("before", "cleared", 0, "pending"), ("before", "raised", 0, "pending")]


def test_a_reminder_is_queued_once_the_interval_has_passed(gateway: Gateway) -> None:
    make_channel("webhook", "http://127.0.0.1:9/a", name="hook")
    flag = make_flag(make_session(gateway))
    raise_flag(flag)
    assert outbox.queue_reminders(NOW + timedelta(minutes=59)) == 0
    assert outbox.queue_reminders(NOW + timedelta(minutes=61)) == 1
    assert outbox.queue_reminders(NOW + timedelta(minutes=90)) == 0  # same interval: once
    assert outbox.queue_reminders(NOW + timedelta(minutes=121)) == 1
    assert kinds() == [
        ("hook", "raised", 0, "pending"),
        ("hook", "reminder", 1, "pending"),
        ("hook", "reminder", 2, "pending"),
    ]


def test_a_cleared_flag_gets_no_more_reminders_and_its_pending_one_is_cancelled(
    gateway: Gateway,
) -> None:
    make_channel("webhook", "http://127.0.0.1:9/a", name="hook")
    flag = make_flag(make_session(gateway))
    raise_flag(flag)
    outbox.queue_reminders(NOW + timedelta(minutes=61))
    clear_flag(flag, NOW + timedelta(minutes=62))
    assert outbox.queue_reminders(NOW + timedelta(hours=5)) == 0
    assert kinds() == [
        ("hook", "cleared", 0, "pending"),
        ("hook", "raised", 0, "pending"),
        ("hook", "reminder", 1, "cancelled"),
    ]
