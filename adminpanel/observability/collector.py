"""The metrics themselves: read from the database at each scrape, the same from any process.

Gauges are counted from the live rows (sessions, locks, flags, leases);
counters come from ``counters`` (durable, never backwards) or from the
gateway's own row (reconnects). A scrape is a handful of grouped queries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from adminpanel.models import BridgeInstance, Flag, Gateway, GatewayLease, Session
from adminpanel.observability import counters, viewers

# Every family /metrics exposes (the alert rules and the dashboard may use only these).
FAMILIES = (
    "runboard_gateway_up",
    "runboard_gateway_held",
    "runboard_gateway_reconnects_total",
    "runboard_events_ingested_total",
    "runboard_ingest_lag_seconds",
    "runboard_sessions",
    "runboard_locks_held",
    "runboard_lock_age_seconds",
    "runboard_flags_active",
    "runboard_skips_total",
    "runboard_actions_total",
    "runboard_viewers",
)


def held_gateways(now: datetime, ttl: timedelta) -> set[int]:
    """Gateways whose lease is unexpired and whose holder's heartbeat is fresher than ``ttl``."""
    fresh = BridgeInstance.objects.filter(heartbeat_at__gt=now - ttl).values("instance")
    return set(
        GatewayLease.objects.filter(expires_at__gt=now, holder__in=fresh).values_list(
            "gateway_id", flat=True
        )
    )


class RunboardCollector(Collector):
    """Yields every runboard_* family; ``now`` is injectable for tests."""

    def __init__(self, now: datetime | None = None) -> None:
        self.fixed_now = now

    def describe(self) -> list[Metric]:
        return []  # no query when registered; names are checked by the tests instead

    def collect(self) -> Iterator[Metric]:
        now = self.fixed_now or timezone.now()
        gateways = {g.pk: g for g in Gateway.objects.all()}
        names = {pk: g.name for pk, g in gateways.items()}
        yield from self._gateways(gateways, now)
        stored = counters.all_values()
        yield from self._counters(stored, names)
        yield from self._sessions(names, now)
        yield from self._flags(names)
        yield GaugeMetricFamily(
            "runboard_viewers",
            "Open live-view WebSockets, across web workers.",
            value=viewers.viewer_count(),
        )

    def _gateways(self, gateways: dict[int, Gateway], now: datetime) -> Iterator[Metric]:
        ttl = timedelta(seconds=settings.RUNBOARD_BRIDGE_LEASE_S)
        held = held_gateways(now, ttl)
        up = GaugeMetricFamily(
            "runboard_gateway_up",
            "1 while an enabled gateway's bridge is connected to it.",
            labels=["gateway"],
        )
        hold = GaugeMetricFamily(
            "runboard_gateway_held",
            "1 while a bridge with a fresh heartbeat holds an enabled gateway's lease.",
            labels=["gateway"],
        )
        reconnects = CounterMetricFamily(
            "runboard_gateway_reconnects",
            "Reconnects of the bridge now mirroring the gateway (resets when another takes over).",
            labels=["gateway"],
        )
        for pk, g in sorted(gateways.items(), key=lambda item: item[1].name):
            reconnects.add_metric([g.name], float(g.reconnects))
            if g.enabled:  # a disabled gateway is meant to be down and unheld
                up.add_metric([g.name], 1.0 if g.status == "connected" else 0.0)
                hold.add_metric([g.name], 1.0 if pk in held else 0.0)
        yield from (up, hold, reconnects)

    def _counters(
        self, stored: dict[str, list[tuple[dict[str, str], int]]], names: dict[int, str]
    ) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "runboard_events_ingested", "Registry events ingest applied.", labels=["gateway"]
        )
        seen = {labels.get("gateway", ""): n for labels, n in stored.get("events_ingested", [])}
        for gateway in sorted(set(seen) | set(names.values())):
            events.add_metric([gateway], float(seen.get(gateway, 0)))
        lag = GaugeMetricFamily(
            "runboard_ingest_lag_seconds",
            "The last batch's lag: its oldest event's gateway time to its commit.",
            labels=["gateway"],
        )
        for labels, us in sorted(stored.get(counters.LAG_NAME, []), key=_by_labels):
            lag.add_metric([labels.get("gateway", "")], us / 1_000_000)
        skips = CounterMetricFamily(
            "runboard_skips",
            "Messages a gateway gave up on (dispatch skips, drain failures).",
            labels=["gateway", "reason"],
        )
        for labels, n in sorted(stored.get("skips", []), key=_by_labels):
            skips.add_metric([labels.get("gateway", ""), labels.get("reason", "")], float(n))
        acts = CounterMetricFamily(
            "runboard_actions",
            "Operator and policy actions, by their audited result.",
            labels=["action", "result"],
        )
        for labels, n in sorted(stored.get("actions", []), key=_by_labels):
            acts.add_metric([labels.get("action", ""), labels.get("result", "")], float(n))
        yield from (events, lag, skips, acts)

    def _sessions(self, names: dict[int, str], now: datetime) -> Iterator[Metric]:
        by_phase = GaugeMetricFamily(
            "runboard_sessions",
            "Sessions by their lock's phase (idle: no lock).",
            labels=["gateway", "phase"],
        )
        phases: dict[tuple[str, str], int] = defaultdict(int)
        rows = (
            Session.objects.values("gateway_id", "locked", "phase")
            .annotate(n=Count("id"))
            .values_list("gateway_id", "locked", "phase", "n")
        )
        for gateway_id, locked, phase, n in rows:
            phases[(names[gateway_id], (phase or "unknown") if locked else "idle")] += n
        for (gateway, phase), n in sorted(phases.items()):
            by_phase.add_metric([gateway, phase], float(n))
        held = GaugeMetricFamily(
            "runboard_locks_held", "Sessions whose lock is held.", labels=["gateway"]
        )
        age = GaugeMetricFamily(
            "runboard_lock_age_seconds",
            "Age of the gateway's oldest held lock (0: none).",
            labels=["gateway"],
        )
        locks = {
            gateway_id: (n, oldest)
            for gateway_id, n, oldest in Session.objects.filter(locked=True)
            .values("gateway_id")
            .annotate(n=Count("id"), oldest=Min("lock_acquired_at"))
            .values_list("gateway_id", "n", "oldest")
        }
        for pk, name in sorted(names.items(), key=lambda item: item[1]):
            n, oldest = locks.get(pk, (0, None))
            held.add_metric([name], float(n))
            seconds = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
            age.add_metric([name], seconds)
        yield from (by_phase, held, age)

    def _flags(self, names: dict[int, str]) -> Iterator[Metric]:
        flags = GaugeMetricFamily(
            "runboard_flags_active", "Active flags by code.", labels=["gateway", "code"]
        )
        rows = (
            Flag.objects.filter(cleared_at__isnull=True)
            .values("session__gateway_id", "code")
            .annotate(n=Count("id"))
            .values_list("session__gateway_id", "code", "n")
        )
        for gateway_id, code, n in sorted(rows, key=lambda r: (names[r[0]], r[1])):
            flags.add_metric([names[gateway_id], code], float(n))
        yield flags


def _by_labels(item: tuple[dict[str, str], int]) -> list[tuple[str, str]]:
    return sorted(item[0].items())
