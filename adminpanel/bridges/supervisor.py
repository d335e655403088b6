"""Runs one bridge per configured gateway and feeds what they receive to ingest.

This is the seam between ``gateway_bridge`` (plain asyncio, no Django) and the
store: bridges hand batches of normalized events to a sink, the sink applies
them through the single ``Ingestor`` (all store writes on one thread, in
order), and a clock tick re-runs the flag rules so a lock that just sits
still is flagged on time. The audit chain's head is noted here on a timer too
(``adminpanel.audit.head.watch``). Operator actions reach the bridges through their
command listeners (``command_server``); automatic recovery (``recovery``)
runs here too and calls the bridges directly. Used by ``manage.py runbridge``
and ``manage.py demo``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import structlog
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.utils import timezone

from adminpanel.audit import head as audit_head
from adminpanel.bridges import command_server, leases, recovery
from adminpanel.bridges.checkpoints import AUTOCHECKPOINT_DEFAULT, Checkpointer, set_autocheckpoint
from adminpanel.ingest import Ingestor, LeaseLost
from adminpanel.live.broadcast import Broadcaster
from adminpanel.models import Gateway
from adminpanel.notify import dispatcher as notify_dispatcher
from gateway_bridge.connection import Bridge, ConnectionState
from gateway_bridge.events import RegistryEvent
from gateway_bridge.feed import ResumePoint, StoreUnavailable
from gateway_bridge.scopes import DEFAULT_SCOPES, scopes_for

log = structlog.get_logger(__name__)

# The event loop shares the GIL with ingest's and the broadcaster's threads, whose
# queries hand it back and forth; a short switch interval keeps each hand-off quick
# (docs/notes/bridge.md has the measurements).
SWITCH_INTERVAL_S = 0.0005


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass(frozen=True, slots=True)
class GatewayTarget:
    name: str
    url: str
    token: str
    scopes: tuple[str, ...] = DEFAULT_SCOPES  # the gateway's access level asks for these


def configured_gateways() -> list[GatewayTarget]:
    """The default gateway from the environment, plus every enabled row in the admin."""
    if settings.RUNBOARD_GATEWAY_URL:
        Gateway.objects.update_or_create(
            name=settings.RUNBOARD_GATEWAY_NAME,
            defaults={
                "url": settings.RUNBOARD_GATEWAY_URL,
                "token": settings.RUNBOARD_GATEWAY_TOKEN,
                "enabled": True,
            },
        )
    rows = Gateway.objects.filter(enabled=True).exclude(url="").order_by("name")
    return [GatewayTarget(g.name, g.url, g.token, scopes_for(g.access)) for g in rows]


@dataclass(frozen=True, slots=True)
class LeaseChange:
    start: set[str]
    lost: set[str]
    hand_back: set[str]


@dataclass
class Running:
    """One gateway this process mirrors now: its bridge and the tasks serving it."""

    bridge: Bridge
    stop: asyncio.Event
    tasks: list[asyncio.Task[None]]


class BridgeSupervisor:
    """Owns the bridges, the ingestor, the detect tick and the broadcaster for one process.

    With a ``holder`` (``runbridge``), it mirrors only the gateways whose lease it
    holds (``leases``), taking its share and taking over those of a bridge that
    died; without one (tests, ``demo --bridge inline``) it mirrors them all.
    """

    def __init__(
        self,
        targets: Sequence[GatewayTarget],
        *,
        ingestor: Ingestor | None = None,
        broadcaster: Broadcaster | None = None,
        holder: leases.Holder | None = None,
    ) -> None:
        self.holder = holder
        self.ingestor = ingestor or Ingestor(fence=self._holds if holder is not None else None)
        # Changed sessions go to the viewers after ingest's transaction committed.
        self.broadcaster = broadcaster or Broadcaster()
        # SQLite's log is copied back on a thread of its own, not inside ingest's commits.
        self.checkpointer = Checkpointer()
        self.targets = {t.name: t for t in targets}
        self.running: dict[str, Running] = {}
        self._states: dict[str, ConnectionState] = {}  # changed, not yet recorded
        self._recorded: dict[str, ConnectionState] = {}  # as last written to the store
        self._write = sync_to_async(self._apply, thread_sensitive=True)
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        if holder is None:
            for name in self.targets:
                self.add_bridge(name)

    @property
    def bridges(self) -> list[Bridge]:
        return [r.bridge for r in self.running.values()]

    def _bridge_for(self, target: GatewayTarget) -> Bridge:
        async def sink(events: Sequence[RegistryEvent]) -> bool:
            return await self._write(events)

        async def resume_from() -> ResumePoint:
            return await sync_to_async(self._cursor, thread_sensitive=True)(target.name)

        def on_state(state: ConnectionState) -> None:
            self._states[target.name] = state

        return Bridge(
            gateway=target.name,
            url=target.url,
            token=target.token,
            scopes=target.scopes,
            sink=sink,
            on_state=on_state,
            call_timeout_s=settings.RUNBOARD_CALL_TIMEOUT_S,
            connect_timeout_s=settings.RUNBOARD_CONNECT_TIMEOUT_S,
            backoff_max_s=settings.RUNBOARD_BACKOFF_MAX_S,
            resume_from=resume_from,
        )

    def bridge(self, gateway: str) -> Bridge:
        running = self.running.get(gateway)
        if running is None:
            raise KeyError(f"no bridge for gateway {gateway!r} in this process")
        return running.bridge

    def _apply(self, events: Sequence[RegistryEvent]) -> bool:
        try:
            # The connection's state first: a lock in the store shows its gateway's mode too.
            self._flush_states(every_change=False)
            result = self.ingestor.apply(events)
        except (OperationalError, InterfaceError) as exc:
            # Down, busy or locked: the bridge holds the batch and tries again. A broken
            # connection is not reused; the next try opens a new one.
            connection.close()
            raise StoreUnavailable(first_line(exc)) from exc
        except LeaseLost as exc:
            # Held, not dropped: if this bridge takes the lease again the batch lands in
            # order; if another bridge took it, this one is stopped at the next lease
            # round and the other resumes from the store's cursor.
            raise StoreUnavailable(f"this bridge does not hold {exc} now") from exc
        self.broadcaster.note(result.changed_sessions, news=result.news_sessions)
        return result.needs_snapshot

    def _holds(self, gateway_pk: int) -> bool:
        assert self.holder is not None
        return leases.holds(self.holder, gateway_pk, timezone.now())

    def _cursor(self, gateway: str) -> ResumePoint:
        """Where the store's mirror of ``gateway`` stands: a reconnection resumes from it."""
        row = Gateway.objects.filter(name=gateway).values_list("boot_id", "last_seq").first()
        return (row[0], row[1]) if row and row[0] else None

    def _tick(self) -> set[str]:
        """Mirror connection states, re-run the rules; return gateways with an overdue gap.

        With leases, only the gateways this process holds: another bridge ticks its own.
        """
        self._flush_states()
        held = None if self.holder is None else set(self.running)
        # What the rules change (a flag raised or cleared, a lock aborted) is news.
        changed = self.ingestor.tick(gateways=held)
        self.broadcaster.note(changed, news=changed)
        return self.ingestor.gaps_overdue()

    def _tick_unless_unavailable(self) -> set[str]:
        """The tick, surviving a database that is away (it runs again next time)."""
        try:
            return self._tick()
        except (OperationalError, InterfaceError) as exc:
            connection.close()
            log.warning("detect_tick_failed", error=first_line(exc))
            return set()
        except DatabaseError:
            # Not the database being away: a bug to see in the log, never the bridge's end.
            log.exception("detect_tick_failed")
            return set()

    def add_bridge(self, name: str) -> Running:
        """The bridge for ``name``, not yet running (``start_bridge`` runs it)."""
        running = Running(self._bridge_for(self.targets[name]), asyncio.Event(), [])
        self.running[name] = running
        return running

    def start_bridge(self, name: str) -> None:
        """Mirror ``name`` from now on: its bridge, and the listener for its commands."""
        running = self.running.get(name) or self.add_bridge(name)
        bridge = running.bridge
        running.tasks = [
            asyncio.create_task(bridge.run(), name=f"bridge:{name}"),
            # Operator actions reach the gateway through this listener.
            asyncio.create_task(
                command_server.serve(bridge, running.stop), name=f"commands:{name}"
            ),
        ]
        log.info("bridge_started", gateway=name)

    async def stop_bridge(self, name: str, *, keep_state: bool = False) -> None:
        """Stop mirroring ``name``: flush what its bridge holds, close its socket.

        ``keep_state``: record it as stopped (this process stops); otherwise the
        bridge that holds the gateway next reports its state.
        """
        running = self.running.pop(name, None)
        if running is None:
            return
        running.stop.set()
        await running.bridge.stop()
        for task in running.tasks:
            task.cancel()
        await asyncio.gather(*running.tasks, return_exceptions=True)
        if not keep_state:
            self._states.pop(name, None)

    async def run(self, stop: asyncio.Event) -> None:
        log.info("bridges_started", gateways=sorted(self.targets))
        self._stop = stop
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(switch_interval, SWITCH_INTERVAL_S))
        self.checkpointer.start()
        if self.checkpointer.applies:
            await sync_to_async(set_autocheckpoint, thread_sensitive=True)(0)
        if self.holder is None:
            for name in self.targets:
                self.start_bridge(name)
        else:
            self._tasks.append(asyncio.create_task(self._keep_leases(stop), name="leases"))
        self._tasks.append(asyncio.create_task(self.broadcaster.run(stop), name="broadcaster"))
        # Notices of raised and cleared flags go out from here, never from ingest's thread.
        self._tasks.append(asyncio.create_task(notify_dispatcher.run(stop), name="notify"))
        # Opt-in automatic recovery acts on the bridges of this process directly.
        caller = command_server.local_caller(self.bridge)
        self._tasks.append(
            asyncio.create_task(recovery.run(stop, self.broadcaster.note, caller), name="recovery")
        )
        # The audit chain's head, noted outside the database even while nothing is appended.
        self._tasks.append(asyncio.create_task(audit_head.watch(stop), name="audit_head"))
        tick = sync_to_async(self._tick_unless_unavailable, thread_sensitive=True)
        try:
            while not stop.is_set():
                overdue = await tick()
                for bridge in (b for b in self.bridges if b.gateway in overdue):
                    # A gap outlived the reorder wait: the bridge's own resync repairs it.
                    bridge.request_resync()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), settings.RUNBOARD_DETECT_TICK_S)
        finally:
            await self.stop()
            sys.setswitchinterval(switch_interval)

    async def _keep_leases(self, stop: asyncio.Event) -> None:
        """Every third of a lease: renew, take this bridge's share, start and stop bridges."""
        every = settings.RUNBOARD_BRIDGE_LEASE_S / 3
        lease_round = sync_to_async(self._lease_round_if_reachable, thread_sensitive=True)
        while not stop.is_set():
            change = await lease_round()
            if change is not None:
                await self._apply_lease_change(change)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    def _lease_round_if_reachable(self) -> LeaseChange | None:
        try:
            # The round's clock starts once it holds a connection: a ``now`` taken
            # before waiting for this thread or for the pool (up to its timeout, while
            # the database comes back) would write leases that expire early, or that
            # have expired already, and the bridge would lose what it just took.
            connection.ensure_connection()
            return self.lease_round(timezone.now())
        except DatabaseError as exc:
            # Leases cannot be renewed while the database is away; once they expire
            # ingest's fence refuses this bridge's writes, and the next round that
            # reaches the database stops the bridges it lost.
            connection.close()
            log.warning("lease_round_failed", error=first_line(exc))
            return None

    def lease_round(self, now: datetime) -> LeaseChange:
        """One round against the database; returns which gateways to start, stop, hand back."""
        assert self.holder is not None
        ttl = timedelta(seconds=settings.RUNBOARD_BRIDGE_LEASE_S)
        ids = dict(Gateway.objects.filter(name__in=self.targets).values_list("name", "pk"))
        names = {pk: name for name, pk in ids.items()}
        leases.heartbeat(self.holder, now)
        held = {ids[n] for n in self.running if n in ids}
        still = leases.renew(self.holder, held, now, ttl)
        plan = leases.plan(
            ids.values(), still, leases.takeable(ids.values(), now),
            leases.live_bridges(now, ttl),
        )  # fmt: skip
        taken = {g for g in plan.acquire if leases.acquire(self.holder, g, now, ttl)}
        return LeaseChange(
            start={names[g] for g in taken},
            lost={names[g] for g in held - still},
            hand_back={names[g] for g in plan.release},
        )

    async def _apply_lease_change(self, change: LeaseChange) -> None:
        for name in change.lost:
            log.warning("gateway_lease_lost", gateway=name)
            await self.stop_bridge(name)
        for name in change.hand_back:
            # Stopped first, released after: the next holder starts from all we wrote.
            log.info("gateway_handed_back", gateway=name)
            await self.stop_bridge(name)
        if change.hand_back and self.holder is not None:
            await sync_to_async(self._release, thread_sensitive=True)(change.hand_back)
        for name in change.start:
            log.info("gateway_lease_taken", gateway=name)
            self.start_bridge(name)

    def _release(self, names: set[str]) -> None:
        assert self.holder is not None
        pks = Gateway.objects.filter(name__in=names).values_list("pk", flat=True)
        leases.release(self.holder, pks)

    async def stop(self) -> None:
        for name in list(self.running):
            await self.stop_bridge(name, keep_state=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await sync_to_async(self._flush_states, thread_sensitive=True)()
        if self.holder is not None:
            with contextlib.suppress(DatabaseError):
                await sync_to_async(leases.leave, thread_sensitive=True)(self.holder)
        if self.checkpointer.applies:
            await asyncio.to_thread(self.checkpointer.stop)
            await sync_to_async(set_autocheckpoint, thread_sensitive=True)(AUTOCHECKPOINT_DEFAULT)
        log.info("bridges_stopped", gateways=sorted(self.targets))

    def _flush_states(self, *, every_change: bool = True) -> None:
        """Mirror the connections' changed states onto their gateway rows.

        Before a batch (``every_change=False``) only the changes a batch must not
        outrun (status, mode, version, errors, scopes): every batch moves
        ``last_event_at``, and writing it there cost two round trips per batch; the
        tick, twice a second, writes every change.
        """
        states, self._states = self._states, {}
        for gateway, state in states.items():
            recorded = self._recorded.get(gateway)
            if not every_change and recorded is not None and _same_but_time(state, recorded):
                # Left for the tick, unless the loop has noted a newer state meanwhile.
                self._states.setdefault(gateway, state)
                continue
            self.ingestor.record_connection(gateway, state)
            self._recorded[gateway] = state


def _same_but_time(state: ConnectionState, recorded: ConnectionState) -> bool:
    """Whether ``state`` differs from ``recorded`` in its last event's time at most."""
    return replace(state, last_event_at=recorded.last_event_at) == recorded
