"""Each metric family carries the values the store holds, whichever process wrote them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from adminpanel.models import Gateway
from adminpanel.observability import counters, viewers
from adminpanel.observability.collector import FAMILIES
from tests.observability.support import (
    bridge,
    flag,
    gateway,
    held,
    lease,
    samples,
    scrape_text,
    session,
    value,
)

pytestmark = pytest.mark.django_db


def test_every_family_is_exposed_with_its_type() -> None:
    gateway("alpha")
    text = scrape_text()

    types = {line.split()[2]: line.split()[3] for line in text.splitlines() if "# TYPE" in line}
    assert set(FAMILIES) == set(types)
    counters_ = {name for name, kind in types.items() if kind == "counter"}
    assert counters_ == {name for name in FAMILIES if name.endswith("_total")}
    assert types["runboard_lock_age_seconds"] == "gauge"


def test_gateway_up_is_one_only_while_connected_and_reconnects_are_exposed() -> None:
    gateway("alpha", status="connected", reconnects=3)
    gateway("beta", status="disconnected", reconnects=0)

    scraped = samples(scrape_text())

    assert value(scraped, "runboard_gateway_up", gateway="alpha") == 1.0
    assert value(scraped, "runboard_gateway_up", gateway="beta") == 0.0
    assert value(scraped, "runboard_gateway_reconnects_total", gateway="alpha") == 3.0
    assert value(scraped, "runboard_gateway_reconnects_total", gateway="beta") == 0.0


def test_gateway_held_needs_an_unexpired_lease_and_a_fresh_heartbeat() -> None:
    held(gateway("alpha"))
    bridge("stale", beat_age_s=60)
    lease(gateway("beta"), "stale")
    bridge("fresh")
    lease(gateway("gamma"), "fresh", expires_in_s=-1)
    gateway("delta")
    gateway("off", enabled=False)

    scraped = samples(scrape_text())

    assert value(scraped, "runboard_gateway_held", gateway="alpha") == 1.0
    assert value(scraped, "runboard_gateway_held", gateway="beta") == 0.0
    assert value(scraped, "runboard_gateway_held", gateway="gamma") == 0.0
    assert value(scraped, "runboard_gateway_held", gateway="delta") == 0.0
    assert value(scraped, "runboard_gateway_held", gateway="off") is None  # not meant to be held
    assert value(scraped, "runboard_gateway_up", gateway="off") is None


def test_sessions_are_counted_by_phase_with_idle_for_unlocked_ones() -> None:
    alpha = gateway("alpha")
    session(alpha, "a1", locked_for_s=10, phase="running")
    session(alpha, "a2", locked_for_s=20, phase="running")
    session(alpha, "a3", locked_for_s=5, phase="queued")
    session(alpha, "a4")

    scraped = samples(scrape_text())

    assert value(scraped, "runboard_sessions", gateway="alpha", phase="running") == 2.0
    assert value(scraped, "runboard_sessions", gateway="alpha", phase="queued") == 1.0
    assert value(scraped, "runboard_sessions", gateway="alpha", phase="idle") == 1.0


def test_locks_held_and_the_oldest_lock_age_per_gateway() -> None:
    alpha, beta = gateway("alpha"), gateway("beta")
    session(alpha, "a1", locked_for_s=30)
    session(alpha, "a2", locked_for_s=300)
    session(beta, "b1")

    scraped = samples(scrape_text())

    assert value(scraped, "runboard_locks_held", gateway="alpha") == 2.0
    assert value(scraped, "runboard_locks_held", gateway="beta") == 0.0
    age = value(scraped, "runboard_lock_age_seconds", gateway="alpha")
    assert age is not None and 300.0 <= age < 310.0
    assert value(scraped, "runboard_lock_age_seconds", gateway="beta") == 0.0


def test_only_active_flags_are_counted_by_code() -> None:
    alpha = gateway("alpha")
    s1, s2 = session(alpha, "a1", locked_for_s=500), session(alpha, "a2", locked_for_s=500)
    flag(s1, "stuck_no_progress")
    flag(s2, "stuck_no_progress")
    flag(s1, "skip_burst", cleared=True)

    scraped = samples(scrape_text())

    assert value(scraped, "runboard_flags_active", gateway="alpha", code="stuck_no_progress") == 2
    assert value(scraped, "runboard_flags_active", gateway="alpha", code="skip_burst") is None


def test_stored_counters_and_the_ingest_lag_are_exposed() -> None:
    gateway("alpha")
    gateway("quiet")
    counters.count("events_ingested", 7, gateway="alpha")
    counters.count("skips", 2, gateway="alpha", reason="active-run")
    counters.count("actions", 1, action="force_clear", result="success")
    counters.count("actions", 4, action="requeue", result="error")
    counters.set_value(counters.LAG_NAME, 1_500_000, gateway="alpha")

    scraped = samples(scrape_text())

    assert value(scraped, "runboard_events_ingested_total", gateway="alpha") == 7.0
    assert value(scraped, "runboard_events_ingested_total", gateway="quiet") == 0.0
    assert value(scraped, "runboard_skips_total", gateway="alpha", reason="active-run") == 2.0
    assert value(scraped, "runboard_actions_total", action="force_clear", result="success") == 1
    assert value(scraped, "runboard_actions_total", action="requeue", result="error") == 4.0
    assert value(scraped, "runboard_ingest_lag_seconds", gateway="alpha") == 1.5


def test_viewers_count_every_open_socket_row() -> None:
    viewers.joined_sync("worker-1.chan-a")
    viewers.joined_sync("worker-2.chan-b")
    viewers.joined_sync("worker-2.chan-b")  # a repeated connect is one viewer
    viewers.left_sync("worker-1.chan-a")
    viewers.left_sync("worker-1.chan-a")  # and a repeated disconnect does not go below

    assert value(samples(scrape_text()), "runboard_viewers") == 1.0


def test_a_renamed_or_removed_gateway_leaves_no_gauge_behind() -> None:
    gateway("alpha")
    Gateway.objects.filter(name="alpha").delete()

    assert 'gateway="alpha"' not in scrape_text()


def test_lock_age_uses_the_scrape_time() -> None:
    alpha = gateway("alpha")
    session(alpha, "a1", locked_for_s=0, now=timezone.now() - timedelta(seconds=90))

    age = value(samples(scrape_text()), "runboard_lock_age_seconds", gateway="alpha")

    assert age is not None and 90.0 <= age < 100.0
