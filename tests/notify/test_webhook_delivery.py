"""Sending to real HTTP receivers on loopback: payloads, failures, retries with backoff."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from adminpanel.models import Gateway
from adminpanel.notify.dispatcher import RETRY_DELAYS_S, Dispatcher
from adminpanel.notify.models import Delivery
from tests.notify.receivers import HttpReceiver, closed_port
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


def test_a_raised_flag_posts_a_json_notice_naming_everything_an_operator_needs(
    gateway: Gateway, receiver: HttpReceiver
) -> None:
    make_channel("webhook", receiver.url)
    flag = make_flag(make_session(gateway))
    raise_flag(flag)
    assert Dispatcher().step(NOW)
    [body] = receiver.bodies
    assert body["event"] == "flag_raised"
    assert (body["gateway"], body["session_key"]) == ("gw-eu", KEY)
    assert body["flag"]["code"] == "terminal_but_held"
    assert body["flag"]["why"].startswith("Run run-1 ended aborted")
    assert body["flag"]["since"] == (NOW - timedelta(seconds=25)).isoformat()
    assert body["session_url"] == f"https://runboard.example/sessions/{flag.session_id}/"
    assert "Force-clear" in body["suggested_action"]
    assert receiver.headers[0]["Content-Type"] == "application/json"
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.sent_at) == ("sent", 1, NOW)


def test_repeated_steps_send_each_notice_once(gateway: Gateway, receiver: HttpReceiver) -> None:
    make_channel("webhook", receiver.url)
    raise_flag(make_flag(make_session(gateway)))
    dispatcher = Dispatcher()
    assert dispatcher.step(NOW)
    assert not dispatcher.step(NOW + timedelta(seconds=5))
    assert not dispatcher.step(NOW + timedelta(minutes=10))
    assert len(receiver.bodies) == 1


def test_a_slack_channel_gets_text_and_blocks(gateway: Gateway, receiver: HttpReceiver) -> None:
    make_channel("slack", receiver.url)
    raise_flag(make_flag(make_session(gateway)))
    Dispatcher().step(NOW)
    [body] = receiver.bodies
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith("Critical: terminal_but_held on gw-eu")
    section = body["blocks"][0]["text"]["text"]
    assert "Suggested action:" in section and "ended aborted" in section
    assert "https://runboard.example/sessions/" in body["blocks"][1]["elements"][0]["text"]


def test_the_clearing_notice_says_it_is_resolved(gateway: Gateway, receiver: HttpReceiver) -> None:
    make_channel("webhook", receiver.url)
    flag = make_flag(make_session(gateway))
    raise_flag(flag)
    clear_flag(flag, NOW + timedelta(minutes=3))
    Dispatcher().step(NOW + timedelta(minutes=3))
    events = [b["event"] for b in receiver.bodies]
    assert events == ["flag_raised", "flag_cleared"]
    cleared = receiver.bodies[1]
    assert cleared["resolved"] is True
    assert cleared["resolved_by"] == "the gateway itself (the condition ended)"


def test_a_reminder_is_sent_after_the_interval(gateway: Gateway, receiver: HttpReceiver) -> None:
    make_channel("slack", receiver.url)
    raise_flag(make_flag(make_session(gateway)))
    dispatcher = Dispatcher()
    dispatcher.step(NOW)
    assert not dispatcher.step(NOW + timedelta(minutes=30))
    assert dispatcher.step(NOW + timedelta(minutes=61))
    assert receiver.bodies[1]["text"].startswith("Still critical: terminal_but_held")


def failed_once(receiver_url: str, gateway: Gateway) -> Delivery:
    make_channel("webhook", receiver_url)
    raise_flag(make_flag(make_session(gateway)))
    started = time.monotonic()
    assert Dispatcher().step(NOW)
    assert time.monotonic() - started < 3  # bounded by the timeout, never hung
    return Delivery.objects.get()


def assert_retry_scheduled(delivery: Delivery, error: str) -> None:
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert error in delivery.last_error
    assert delivery.next_attempt_at == NOW + timedelta(seconds=RETRY_DELAYS_S[0])


def test_a_receiver_answering_500_costs_a_retry_and_a_recorded_failure(
    gateway: Gateway, receiver: HttpReceiver
) -> None:
    receiver.status = 500
    assert_retry_scheduled(failed_once(receiver.url, gateway), "HTTP 500")
    assert len(receiver.bodies) == 1


def test_a_receiver_that_is_down_costs_a_retry_and_a_recorded_failure(gateway: Gateway) -> None:
    delivery = failed_once(f"http://127.0.0.1:{closed_port()}/hook", gateway)
    assert_retry_scheduled(delivery, "cannot connect")


def test_a_slow_receiver_is_given_up_on_after_the_timeout(
    gateway: Gateway, receiver: HttpReceiver, settings: Any
) -> None:
    receiver.delay_s = settings.RUNBOARD_NOTIFY_TIMEOUT_S + 1.0
    assert_retry_scheduled(failed_once(receiver.url, gateway), "no answer within 0.5 s")


def test_retries_back_off_then_give_up(gateway: Gateway, receiver: HttpReceiver) -> None:
    receiver.status = 503
    make_channel("webhook", receiver.url)
    raise_flag(make_flag(make_session(gateway)))
    dispatcher, at = Dispatcher(), NOW
    dispatcher.step(at)
    for delay in RETRY_DELAYS_S:
        assert not dispatcher.step(at + timedelta(seconds=delay - 1))  # not due yet
        at += timedelta(seconds=delay)
        assert dispatcher.step(at)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 4, None)
    assert len(receiver.bodies) == 4


def test_a_receiver_refusing_the_request_is_not_retried(
    gateway: Gateway, receiver: HttpReceiver
) -> None:
    receiver.status = 404
    delivery = failed_once(receiver.url, gateway)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (
        "failed",
        1,
        "HTTP 404 Not Found",
    )


def test_a_retry_that_succeeds_clears_the_delivery_as_sent(
    gateway: Gateway, receiver: HttpReceiver
) -> None:
    receiver.status = 500
    failed_once(receiver.url, gateway)
    receiver.status = 200
    assert Dispatcher().step(NOW + timedelta(seconds=RETRY_DELAYS_S[0]))
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("sent", 2)
    assert "HTTP 500" in delivery.last_error  # the failure stays on record
