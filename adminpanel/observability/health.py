"""``/healthz`` (the process answers) and ``/readyz`` (it can do its job): no login, no secrets.

Readiness names each check with ``ok`` and, when it failed, ``why``; a failure
says what kind of error happened, never the connection string or a host's
credentials. A load balancer reads the status code, a person reads the list.
"""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from adminpanel.models import BridgeInstance, Gateway, GatewayLease

# Each readiness probe gives up after this long: a load balancer's own timeout is a few seconds.
CHECK_TIMEOUT_S = 1.0


def check(name: str, why: str = "") -> dict[str, Any]:
    return {"check": name, "ok": not why, "why": why}


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return check("database", f"unreachable ({type(exc).__name__})")
    finally:
        connection.close()  # this worker thread's connection goes back (to the pool)
    return check("database")


async def database_within_timeout() -> dict[str, Any]:
    """The database check, given up after CHECK_TIMEOUT_S.

    With PostgreSQL down, psycopg's pool waits RUNBOARD_DB_POOL_TIMEOUT_S for a
    connection before it fails, and the probe must answer sooner than a load
    balancer's timeout. So the check runs on a thread of the probes' own (not
    through ``sync_to_async``, which waits for its thread even when cancelled)
    and is left behind when it takes too long: the thread ends, its
    connection closed, when the pool gives up. Two threads bound what probes
    left behind can hold; a probe queued behind them times out the same way.
    """
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            return await loop.run_in_executor(_DATABASE_PROBES, database)
    except TimeoutError:
        return check("database", f"no answer within {CHECK_TIMEOUT_S:g} s")


_DATABASE_PROBES = ThreadPoolExecutor(max_workers=2, thread_name_prefix="readyz-database")


async def channel_layer() -> dict[str, Any]:
    """Send a message to a fresh channel and read it back, within CHECK_TIMEOUT_S."""
    try:
        layer = get_channel_layer()
        if layer is None:
            return check("channel_layer", "no channel layer is configured")
        nonce = secrets.token_hex(8)
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            channel = await layer.new_channel("readyz.")
            await layer.send(channel, {"type": "readyz.ping", "nonce": nonce})
            message = await layer.receive(channel)
    except TimeoutError:
        return check("channel_layer", f"no answer within {CHECK_TIMEOUT_S:g} s")
    except Exception as exc:
        return check("channel_layer", f"unreachable ({type(exc).__name__})")
    if message.get("nonce") != nonce:
        return check("channel_layer", "read back another message than the one sent")
    return check("channel_layer")


def gateway_why(
    lease: GatewayLease | None, heartbeat: datetime | None, now: datetime, ttl: timedelta
) -> str:
    """Why a gateway is not held by a live bridge, or "" when it is."""
    if lease is None:
        return "held by no bridge"
    if lease.expires_at <= now:
        return f"its lease expired {int((now - lease.expires_at).total_seconds())} s ago"
    if heartbeat is None:
        return "its holder has no heartbeat"
    age = (now - heartbeat).total_seconds()
    if age >= ttl.total_seconds():
        return (
            f"its bridge's heartbeat is {int(age)} s old (lease period {ttl.total_seconds():g} s)"
        )
    return ""


def gateways(now: datetime) -> list[dict[str, Any]]:
    """One check per enabled gateway: a bridge holds it and is alive."""
    ttl = timedelta(seconds=settings.RUNBOARD_BRIDGE_LEASE_S)
    leases = {lease.gateway_id: lease for lease in GatewayLease.objects.all()}
    beats = dict(BridgeInstance.objects.values_list("instance", "heartbeat_at"))
    out = []
    for gateway in Gateway.objects.filter(enabled=True).order_by("name"):
        lease = leases.get(gateway.pk)
        beat = beats.get(lease.holder) if lease else None
        out.append(check(f"gateway:{gateway.name}", gateway_why(lease, beat, now, ttl)))
    return out


@require_GET
async def readyz(request: HttpRequest) -> JsonResponse:
    db = await database_within_timeout()
    checks = [db, await channel_layer()]
    if db["ok"]:
        try:
            checks += await sync_to_async(gateways)(timezone.now())
        except Exception as exc:
            checks.append(check("gateways", f"could not be read ({type(exc).__name__})"))
    ready = all(c["ok"] for c in checks)
    return JsonResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )
