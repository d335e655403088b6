"""Shared by the observability tests: store rows in a known state, and a parsed scrape."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from adminpanel.models import BridgeInstance, Flag, Gateway, GatewayLease, Session

METRICS_TOKEN = "metrics-token-for-tests-0123456789"


def gateway(name: str, **fields: Any) -> Gateway:
    return Gateway.objects.create(name=name, **fields)


def session(
    gw: Gateway,
    key: str,
    *,
    locked_for_s: float | None = None,
    phase: str = "running",
    now: datetime | None = None,
) -> Session:
    now = now or timezone.now()
    if locked_for_s is None:
        return Session.objects.create(gateway=gw, session_key=key)
    return Session.objects.create(
        gateway=gw,
        session_key=key,
        locked=True,
        phase=phase,
        run_id=f"run-{key}",
        lock_acquired_at=now - timedelta(seconds=locked_for_s),
    )


def flag(s: Session, code: str, *, cleared: bool = False) -> Flag:
    now = timezone.now()
    return Flag.objects.create(
        session=s,
        code=code,
        severity="warning",
        why="test",
        since=now,
        raised_at=now,
        cleared_at=now if cleared else None,
    )


def bridge(instance: str, *, beat_age_s: float = 0.0, now: datetime | None = None) -> None:
    now = now or timezone.now()
    BridgeInstance.objects.create(
        instance=instance,
        host="host",
        pid=1,
        started_at=now - timedelta(hours=1),
        heartbeat_at=now - timedelta(seconds=beat_age_s),
    )


def lease(
    gw: Gateway, holder: str, *, expires_in_s: float = 10.0, now: datetime | None = None
) -> GatewayLease:
    now = now or timezone.now()
    return GatewayLease.objects.create(
        gateway=gw,
        holder=holder,
        host="host",
        pid=1,
        since=now - timedelta(minutes=5),
        expires_at=now + timedelta(seconds=expires_in_s),
    )


def held(gw: Gateway, instance: str = "bridge-1") -> None:
    """A live bridge holds ``gw``: fresh heartbeat, unexpired lease."""
    if not BridgeInstance.objects.filter(instance=instance).exists():
        bridge(instance)
    lease(gw, instance)


def scrape_text(token: str = METRICS_TOKEN) -> str:
    response = Client().get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.content
    return response.content.decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(sample name, labels) → value, from Prometheus' text format."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(
    scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    return scraped.get((name, frozenset(labels.items())))
