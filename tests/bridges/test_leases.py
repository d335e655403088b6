"""Gateway leases: one holder per gateway, renewals, takeover after expiry, the fence, the share."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adminpanel.bridges import leases
from adminpanel.bridges.leases import Holder, Plan
from adminpanel.models import BridgeInstance, Gateway, GatewayLease

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(seconds=6)
A = Holder("host-a:1:aaaa", "host-a", 1)
B = Holder("host-b:2:bbbb", "host-b", 2)


def gateway(name: str = "gw") -> int:
    return Gateway.objects.create(name=name, url="ws://127.0.0.1:1").pk


def test_the_first_bridge_takes_a_free_gateway_and_a_second_is_refused() -> None:
    gw = gateway()
    assert leases.acquire(A, gw, T0, TTL)
    assert not leases.acquire(B, gw, T0 + timedelta(seconds=1), TTL)
    lease = GatewayLease.objects.get(gateway_id=gw)
    assert (lease.holder, lease.host, lease.pid, lease.since) == (A.instance, "host-a", 1, T0)


def test_a_renewed_lease_stays_with_its_holder_past_the_first_expiry() -> None:
    gw = gateway()
    leases.acquire(A, gw, T0, TTL)
    assert leases.renew(A, [gw], T0 + timedelta(seconds=2), TTL) == {gw}
    assert not leases.acquire(B, gw, T0 + timedelta(seconds=7), TTL)


def test_another_bridge_takes_over_once_the_lease_expired() -> None:
    gw = gateway()
    leases.acquire(A, gw, T0, TTL)
    later = T0 + TTL + timedelta(milliseconds=1)
    assert leases.acquire(B, gw, later, TTL)
    lease = GatewayLease.objects.get(gateway_id=gw)
    assert (lease.holder, lease.since) == (B.instance, later)


def test_a_bridge_that_was_paused_past_its_lease_does_not_renew_it() -> None:
    gw = gateway()
    leases.acquire(A, gw, T0, TTL)
    assert leases.renew(A, [gw], T0 + TTL, TTL) == set()


def test_the_fence_holds_only_for_the_current_unexpired_holder() -> None:
    gw = gateway()
    leases.acquire(A, gw, T0, TTL)
    assert leases.holds(A, gw, T0 + timedelta(seconds=1))
    assert not leases.holds(B, gw, T0 + timedelta(seconds=1))
    assert not leases.holds(A, gw, T0 + TTL)
    leases.acquire(B, gw, T0 + TTL, TTL)
    assert not leases.holds(A, gw, T0 + TTL + timedelta(seconds=1))


def test_a_clean_stop_releases_every_lease_and_the_heartbeat() -> None:
    gws = [gateway("one"), gateway("two")]
    leases.heartbeat(A, T0)
    for gw in gws:
        leases.acquire(A, gw, T0, TTL)
    leases.leave(A)
    assert not GatewayLease.objects.exists() and not BridgeInstance.objects.exists()
    assert leases.takeable(gws, T0) == set(gws)


def test_live_bridges_counts_fresh_heartbeats_only() -> None:
    leases.heartbeat(A, T0)
    leases.heartbeat(B, T0 + timedelta(seconds=10))
    assert leases.live_bridges(T0 + timedelta(seconds=11), TTL) == 1
    assert BridgeInstance.objects.get(instance=B.instance).started_at == T0 + timedelta(seconds=10)


def test_a_lone_bridge_plans_to_take_every_free_gateway() -> None:
    assert leases.plan([1, 2, 3], held=[], free=[1, 2, 3], live=1) == Plan((1, 2, 3), ())


def test_two_bridges_plan_half_each_and_the_fuller_one_hands_one_back() -> None:
    assert leases.plan([1, 2, 3, 4], held=[], free=[3, 4], live=2) == Plan((3, 4), ())
    assert leases.plan([1, 2, 3, 4], held=[1, 2, 3], free=[4], live=2) == Plan((), (3,))


def test_a_bridge_at_its_share_takes_nothing_more() -> None:
    assert leases.plan([1, 2], held=[1], free=[2], live=2) == Plan((), ())


@pytest.mark.django_db(transaction=True)
def test_a_lease_round_that_waited_for_the_database_takes_a_full_lease_from_then_on(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    from django.db import connection
    from django.utils import timezone

    from adminpanel.bridges.supervisor import BridgeSupervisor, GatewayTarget

    settings.RUNBOARD_BRIDGE_LEASE_S = 2.0
    Gateway.objects.create(name="gw")
    supervisor = BridgeSupervisor([GatewayTarget("gw", "ws://127.0.0.1:9", "t")], holder=A)
    waited_until: list[datetime] = []
    reach = connection.ensure_connection

    def slow_database() -> None:  # as the pool waits while the server comes back
        time.sleep(1.0)
        reach()
        waited_until.append(timezone.now())

    monkeypatch.setattr(connection, "ensure_connection", slow_database)
    change = supervisor._lease_round_if_reachable()

    assert change is not None and change.start == {"gw"}
    lease = GatewayLease.objects.get(gateway__name="gw")
    assert lease.since >= waited_until[0]
    assert lease.expires_at - lease.since == timedelta(seconds=2)
