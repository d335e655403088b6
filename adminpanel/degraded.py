"""What is degraded right now, in words for the banner every page shows.

Derived from real state, read when a page renders: the store answering at
all, each enabled gateway's lease (no fresh lease while bridges run means no
bridge mirrors it: its updates are paused), its connection as the bridge
last recorded it, a ping of Redis when the channel layer is Redis (cached
for a few seconds per worker so a page load never waits on it twice), and the
free space of a SQLite database's disk: when it is full writes needing room fail
(the bridges hold their batches, actions may fail) while pages still read,
and nobody can record that in the database, so the page asks the disk itself.
A page whose database is away answers 503 saying so (``StoreUnavailableMiddleware``).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import redis
import structlog
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.signals import got_request_exception
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.html import escape

from adminpanel.models import BridgeInstance, Gateway, GatewayLease

log = structlog.get_logger(__name__)

REDIS_PING_CACHE_S = 3.0
REDIS_PING_TIMEOUT_S = 0.5
# Less free than this on a SQLite database's disk: its next writes fail, or already do.
DISK_FULL_BYTES = 1 << 20
# A lease holder whose heartbeat is older than this many lease periods has stopped
# (it beats every third of one): its gateway is paused until another bridge takes it.
STALE_BEAT_LEASES = 2 / 3
_redis_seen: tuple[float, str] = (0.0, "")
_redis_lock = threading.Lock()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def redis_problem(now_s: float | None = None) -> str:
    """Why Redis does not answer (blank when it does), re-asked every few seconds."""
    global _redis_seen
    if not settings.REDIS_URL:
        return ""
    now_s = time.monotonic() if now_s is None else now_s
    with _redis_lock:
        at, problem = _redis_seen
        if at and now_s - at < REDIS_PING_CACHE_S:
            return problem
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=REDIS_PING_TIMEOUT_S,
                                      socket_connect_timeout=REDIS_PING_TIMEOUT_S)  # fmt: skip
        try:
            client.ping()
            problem = ""
        except (redis.RedisError, OSError) as exc:
            problem = first_line(exc)
        finally:
            client.close()
        _redis_seen = (now_s, problem)
        return problem


def gateway_notices() -> list[str]:
    """Gateways nobody mirrors now, and those whose connection is down."""
    now = timezone.now()
    ttl = timedelta(seconds=settings.RUNBOARD_BRIDGE_LEASE_S)
    beats = dict(BridgeInstance.objects.values_list("instance", "heartbeat_at"))
    # Leases only count where bridges take them (runbridge); inline bridges hold none.
    leased = any(beat > now - 10 * ttl for beat in beats.values())
    leases = {
        lease.gateway.name: lease
        for lease in GatewayLease.objects.filter(expires_at__gt=now).select_related("gateway")
    }
    notices = []
    for gw in Gateway.objects.filter(enabled=True).exclude(url="").order_by("name"):
        lease = leases.get(gw.name)
        if leased and lease is None:
            notices.append(f"Gateway {gw.name} is held by no bridge: its updates are paused.")
        elif leased and lease is not None and (why := holder_stopped(lease, beats, now, ttl)):
            notices.append(
                f"Gateway {gw.name} is held by no bridge: its updates are paused ({why})."
            )
        elif gw.status != "connected" and gw.last_error:
            notices.append(f"Gateway {gw.name} is {gw.status}: {gw.last_error[:200]}")
    return notices


def holder_stopped(
    lease: GatewayLease, beats: dict[str, datetime], now: datetime, ttl: timedelta
) -> str:
    """Why the bridge holding ``lease`` is taken for dead though the lease still runs ("" if
    alive). It beats every third of a lease: two beats missed say so before the lease ends."""
    beat = beats.get(lease.holder)
    if beat is not None and now - beat < ttl * STALE_BEAT_LEASES:
        return ""
    holder = f"pid {lease.pid} on {lease.host}"
    if beat is None:
        return f"the bridge holding it, {holder}, is gone"
    age = (now - beat).total_seconds()
    return f"the bridge holding it, {holder}, last answered {age:.0f} s ago"


def sqlite_folder() -> Path | None:
    """The folder of the SQLite database in use (None on PostgreSQL or in memory)."""
    if connection.vendor != "sqlite":
        return None
    name = str(connection.settings_dict["NAME"])
    if name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name).parent


def disk_notice(folder: Path, free_bytes: int) -> str:
    """What a page says about the store's disk with ``free_bytes`` left (blank: enough)."""
    if free_bytes >= DISK_FULL_BYTES:
        return ""
    return (
        f"The store's disk is full ({free_bytes // 1024} KiB free in {folder}): its writes "
        "fail, so gateway updates are held and actions may fail until space is freed."
    )


def disk_problem() -> str:
    folder = sqlite_folder()
    if folder is None:
        return ""
    try:
        stat = os.statvfs(folder)
    except OSError:
        return ""
    return disk_notice(folder, stat.f_bavail * stat.f_frsize)


def notices() -> list[str]:
    """Every degraded part, one sentence each; empty when all is well."""
    found = []
    if problem := disk_problem():
        found.append(problem)
    try:
        found.extend(gateway_notices())
    except DatabaseError as exc:
        found.append(f"The store is unavailable: {first_line(exc)}")
    if problem := redis_problem():
        found.append(f"Live updates unavailable: Redis unreachable ({problem}).")
    return found


STORE_ERROR = "runboard.store_error"


def note_store_error(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """On any request's exception: remember on the request if the database was the cause."""
    exc = sys.exc_info()[1]
    if request is not None and isinstance(exc, OperationalError | InterfaceError):
        request.META[STORE_ERROR] = first_line(exc)


# Wherever the database fails (a view, or a middleware reading the session), Django
# turns it into a 500 there and sends this signal; the middleware below reads the note.
got_request_exception.connect(note_store_error, dispatch_uid="runboard-store-error")


class StoreUnavailableMiddleware:
    """A request that failed because the database is away answers 503 saying so, not a
    bare 500. The bridges hold their batches and retry meanwhile; pages recover by themselves.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        return self.replace(request, self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        return self.replace(request, await self.get_response(request))

    def replace(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        error = request.META.get(STORE_ERROR)
        if response.status_code != 500 or not error:
            return response
        log.warning("store_unavailable", path=request.path, error=error)
        if request.path.startswith("/api/"):
            body = {"error": f"The store is unavailable: {error}", "details": {}}
            return JsonResponse(body, status=503)
        text = escape(f"The store is unavailable: {error}")
        html = (
            "<!doctype html><title>Store unavailable — Runboard</title>"
            f'<div class="degraded" role="status"><p>{text}</p><p>Runboard retries; '
            "this page works again once the database is back.</p></div>"
        )
        return HttpResponse(html, status=503)
