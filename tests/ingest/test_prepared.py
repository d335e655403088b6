"""On PostgreSQL the live path's statements are prepared: parsed and planned once per connection."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from adminpanel.detect import Thresholds
from adminpanel.ingest import Ingestor
from adminpanel.models import MetricCounter, Session, TimelineEvent
from gateway_bridge.events import GatewayStarted, LockAcquired, LockReleased, PhaseChanged
from tests.ingest.streams import KEY, T0, GatewayScript

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


def prepared() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_the_live_paths_inserts_updates_and_selects_are_prepared_after_a_few_batches() -> None:
    g = GatewayScript()
    ingestor = Ingestor(thresholds=Thresholds(), clock=lambda: T0 + 10)
    connection.ensure_connection()
    ingestor.apply([g.next(GatewayStarted, version="2026.5.28")])
    for n in range(8):  # a turn per batch, as the live path writes them
        run = f"run-{n}"
        ingestor.apply([
            g.next(LockAcquired, session_key=KEY, run_id=run),
            g.next(PhaseChanged, session_key=KEY, run_id=run, phase="running"),
            g.next(LockReleased, session_key=KEY, run_id=run),
        ])  # fmt: skip
    statements = prepared()
    timeline, sessions, counters = (
        connection.ops.quote_name(model._meta.db_table)
        for model in (TimelineEvent, Session, MetricCounter)
    )
    assert any(s.startswith(f"INSERT INTO {timeline}") for s in statements), statements
    assert any(s.startswith(f"UPDATE {sessions}") for s in statements), statements
    assert any(s.startswith("SELECT") and sessions in s for s in statements), statements
    assert any(s.startswith(f"INSERT INTO {counters}") for s in statements), "\n".join(statements)


def test_the_lease_fence_is_prepared_after_a_few_batches() -> None:
    from datetime import UTC, datetime, timedelta

    from adminpanel.bridges import leases
    from adminpanel.models import Gateway, GatewayLease

    gateway = Gateway.objects.create(name="gw")
    now = datetime(2026, 12, 5, tzinfo=UTC)
    me = leases.Holder(instance="bridge-a", host="here", pid=1)
    GatewayLease.objects.create(
        gateway=gateway, holder=me.instance, host=me.host, pid=me.pid,
        since=now, expires_at=now + timedelta(seconds=30),
    )  # fmt: skip
    for _ in range(6):
        with transaction.atomic():
            assert leases.holds(me, gateway.pk, now)
    assert not leases.holds(me, gateway.pk, now + timedelta(seconds=31))
    lease = connection.ops.quote_name(GatewayLease._meta.db_table)
    assert any(lease in s and "FOR UPDATE" in s for s in prepared()), prepared()
