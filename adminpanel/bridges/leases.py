"""Which bridge mirrors which gateway: leases held in the database, one holder each.

Several ``runbridge`` processes share the gateways. Each announces itself with
a heartbeat row (``BridgeInstance``) and holds the gateways it mirrors through
``GatewayLease`` rows that expire unless renewed. A bridge that dies stops
renewing; once its leases expire a survivor takes them over and resyncs.
Every step is a compare-and-set ``UPDATE … WHERE`` whose row count says who
won, so two bridges never both believe they hold a gateway, and ingest's
``holds()`` fence inside each batch's transaction makes sure a bridge that
lost its lease (paused, partitioned) can never write the gateway again.

Plain functions of the database and an injected ``now``; the supervisor
decides when to call them (``plan`` is pure).
"""

from __future__ import annotations

import math
import os
import secrets
import socket
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction

from adminpanel import prepared_sql
from adminpanel.models import BridgeInstance, Gateway, GatewayLease


@dataclass(frozen=True, slots=True)
class Holder:
    """One bridge process: ``instance`` is unique even when a pid is reused."""

    instance: str
    host: str
    pid: int

    @classmethod
    def this_process(cls) -> Holder:
        host, pid = socket.gethostname(), os.getpid()
        return cls(f"{host[:40]}:{pid}:{secrets.token_hex(4)}", host, pid)


def heartbeat(me: Holder, now: datetime) -> None:
    """Say this bridge is alive (and when it started, the first time)."""
    updated = BridgeInstance.objects.filter(instance=me.instance).update(heartbeat_at=now)
    if not updated:
        BridgeInstance.objects.create(
            instance=me.instance, host=me.host, pid=me.pid, started_at=now, heartbeat_at=now
        )


def live_bridges(now: datetime, ttl: timedelta) -> int:
    """Bridges whose heartbeat is fresher than one lease period."""
    return BridgeInstance.objects.filter(heartbeat_at__gt=now - ttl).count()


def forget_dead(now: datetime, older_than: timedelta) -> int:
    """Remove heartbeat rows of bridges gone for long (their leases expired long ago)."""
    deleted, _ = BridgeInstance.objects.filter(heartbeat_at__lt=now - older_than).delete()
    return deleted


def acquire(me: Holder, gateway_id: int, now: datetime, ttl: timedelta) -> bool:
    """Take the gateway if nobody holds it or its holder's lease ran out."""
    taken = GatewayLease.objects.filter(gateway_id=gateway_id, expires_at__lte=now).update(
        holder=me.instance, host=me.host, pid=me.pid, since=now, expires_at=now + ttl
    )
    if taken:
        return True
    if GatewayLease.objects.filter(gateway_id=gateway_id).exists():
        return False
    try:
        with transaction.atomic():
            GatewayLease.objects.create(
                gateway_id=gateway_id, holder=me.instance, host=me.host, pid=me.pid,
                since=now, expires_at=now + ttl,
            )  # fmt: skip
    except IntegrityError:
        return False  # another bridge created it first
    return True


def renew(me: Holder, gateway_ids: Collection[int], now: datetime, ttl: timedelta) -> set[int]:
    """Extend the leases still held; returns the gateways this bridge still holds.

    A lease that already expired is not renewed even if nobody took it yet:
    this bridge may have been paused past it, so it starts over (a new
    acquire and a snapshot) rather than carry on as if nothing happened.
    """
    if not gateway_ids:
        return set()
    expires = now + ttl
    GatewayLease.objects.filter(
        holder=me.instance, gateway_id__in=gateway_ids, expires_at__gt=now
    ).update(expires_at=expires)
    return set(
        GatewayLease.objects.filter(
            holder=me.instance, gateway_id__in=gateway_ids, expires_at=expires
        ).values_list("gateway_id", flat=True)
    )


def release(me: Holder, gateway_ids: Iterable[int]) -> None:
    """Give gateways up at once (a clean stop, or handing one to a newer bridge)."""
    GatewayLease.objects.filter(holder=me.instance, gateway_id__in=list(gateway_ids)).delete()


def leave(me: Holder) -> None:
    """A clean stop: release everything and remove the heartbeat."""
    GatewayLease.objects.filter(holder=me.instance).delete()
    BridgeInstance.objects.filter(instance=me.instance).delete()


def holds(me: Holder, gateway_id: int, now: datetime) -> bool:
    """The fence: inside a write transaction, does this bridge still hold the gateway?

    On PostgreSQL the row is locked until the transaction ends, so a takeover
    waits for this batch's commit instead of slipping in before it.
    """
    # Once per batch: plain SQL (prepared on PostgreSQL), not the ORM's compile each time.
    table = connection.ops.quote_name(GatewayLease._meta.db_table)
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    with prepared_sql.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {table} WHERE gateway_id = %s AND holder = %s AND expires_at > %s"
            f"{lock}",
            [gateway_id, me.instance, connection.ops.adapt_datetimefield_value(now)],
        )
        return cursor.fetchone() is not None


def holder_of(gateway: Gateway, now: datetime) -> GatewayLease | None:
    """The unexpired lease on ``gateway`` (select_related("lease") spares a query), or None."""
    try:
        lease = gateway.lease
    except GatewayLease.DoesNotExist:
        return None
    return lease if lease.expires_at > now else None


def takeable(gateway_ids: Collection[int], now: datetime) -> set[int]:
    """Gateways nobody holds, or whose lease ran out."""
    held = set(
        GatewayLease.objects.filter(gateway_id__in=gateway_ids, expires_at__gt=now).values_list(
            "gateway_id", flat=True
        )
    )
    return set(gateway_ids) - held


@dataclass(frozen=True, slots=True)
class Plan:
    acquire: tuple[int, ...]
    release: tuple[int, ...]


def plan(gateway_ids: Collection[int], held: Collection[int], free: Collection[int],
         live: int) -> Plan:  # fmt: skip
    """This bridge's fair share: ``ceil(gateways / live bridges)``.

    Below it, take free gateways (lowest id first, so bridges race on the same
    ones and the compare-and-set sorts them out); above it, hand back one
    gateway per round, so a bridge that joins gets work without every gateway
    changing hands at once.
    """
    share = math.ceil(len(gateway_ids) / max(live, 1))
    if len(held) > share:
        return Plan((), (max(held),))
    wanted = sorted(g for g in free if g not in held)[: max(share - len(held), 0)]
    return Plan(tuple(wanted), ())
