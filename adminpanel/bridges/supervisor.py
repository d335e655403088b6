"""Runs one bridge per configured gateway and feeds what they receive to ingest.

This is the seam between ``gateway_bridge`` (plain asyncio, no Django) and the
store: bridges hand batches of normalized events to a sink, the sink applies
them through the single ``Ingestor`` (all store writes on one thread, in
order), and a clock tick re-runs the flag rules so a lock that just sits
still is flagged on time. Operator actions reach the bridges through their
command listeners (``command_server``); automatic recovery (``recovery``)
runs here too and calls the bridges directly. Used by ``manage.py runbridge``
and ``manage.py demo``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from asgiref.sync import sync_to_async
from django.conf import settings

from adminpanel.bridges import command_server, recovery
from adminpanel.bridges.checkpoints import AUTOCHECKPOINT_DEFAULT, Checkpointer, set_autocheckpoint
from adminpanel.ingest import Ingestor
from adminpanel.live.broadcast import Broadcaster
from adminpanel.models import Gateway
from gateway_bridge.connection import Bridge, ConnectionState
from gateway_bridge.events import RegistryEvent

log = structlog.get_logger(__name__)

# The event loop shares the GIL with ingest's and the broadcaster's threads, whose
# queries hand it back and forth; a short switch interval keeps each hand-off quick
# (docs/notes/bridge.md has the measurements).
SWITCH_INTERVAL_S = 0.0005


@dataclass(frozen=True, slots=True)
class GatewayTarget:
    name: str
    url: str
    token: str


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
    return [GatewayTarget(g.name, g.url, g.token) for g in rows]


class BridgeSupervisor:
    """Owns the bridges, the ingestor, the detect tick and the broadcaster for one process."""

    def __init__(
        self,
        targets: Sequence[GatewayTarget],
        *,
        ingestor: Ingestor | None = None,
        broadcaster: Broadcaster | None = None,
    ) -> None:
        self.ingestor = ingestor or Ingestor()
        # Changed sessions go to the viewers after ingest's transaction committed.
        self.broadcaster = broadcaster or Broadcaster()
        # SQLite's log is copied back on a thread of its own, not inside ingest's commits.
        self.checkpointer = Checkpointer()
        self.bridges = [self._bridge_for(t) for t in targets]
        self._states: dict[str, ConnectionState] = {}
        self._write = sync_to_async(self._apply, thread_sensitive=True)
        self._tasks: list[asyncio.Task[None]] = []

    def _bridge_for(self, target: GatewayTarget) -> Bridge:
        async def sink(events: Sequence[RegistryEvent]) -> bool:
            return await self._write(events)

        def on_state(state: ConnectionState) -> None:
            self._states[target.name] = state

        return Bridge(
            gateway=target.name,
            url=target.url,
            token=target.token,
            sink=sink,
            on_state=on_state,
            call_timeout_s=settings.RUNBOARD_CALL_TIMEOUT_S,
            connect_timeout_s=settings.RUNBOARD_CONNECT_TIMEOUT_S,
            backoff_max_s=settings.RUNBOARD_BACKOFF_MAX_S,
        )

    def bridge(self, gateway: str) -> Bridge:
        for bridge in self.bridges:
            if bridge.gateway == gateway:
                return bridge
        raise KeyError(f"no bridge for gateway {gateway!r}")

    def _apply(self, events: Sequence[RegistryEvent]) -> bool:
        # The connection's state first: a lock in the store shows its gateway's mode too.
        self._flush_states()
        result = self.ingestor.apply(events)
        self.broadcaster.note(result.changed_sessions)
        return result.needs_snapshot

    def _tick(self) -> set[str]:
        """Mirror connection states, re-run the rules; return gateways with an overdue gap."""
        self._flush_states()
        self.broadcaster.note(self.ingestor.tick())
        return self.ingestor.gaps_overdue()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("bridges_started", gateways=[b.gateway for b in self.bridges])
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(switch_interval, SWITCH_INTERVAL_S))
        self.checkpointer.start()
        if self.checkpointer.applies:
            await sync_to_async(set_autocheckpoint, thread_sensitive=True)(0)
        self._tasks = [
            asyncio.create_task(b.run(), name=f"bridge:{b.gateway}") for b in self.bridges
        ]
        self._tasks.append(asyncio.create_task(self.broadcaster.run(stop), name="broadcaster"))
        # Operator actions reach the gateways through these listeners.
        self._tasks += [
            asyncio.create_task(command_server.serve(b, stop), name=f"commands:{b.gateway}")
            for b in self.bridges
        ]
        # Opt-in automatic recovery acts on the bridges of this process directly.
        caller = command_server.local_caller(self.bridge)
        self._tasks.append(
            asyncio.create_task(recovery.run(stop, self.broadcaster.note, caller), name="recovery")
        )
        tick = sync_to_async(self._tick, thread_sensitive=True)
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

    async def stop(self) -> None:
        await asyncio.gather(*(b.stop() for b in self.bridges), return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await sync_to_async(self._flush_states, thread_sensitive=True)()
        if self.checkpointer.applies:
            await asyncio.to_thread(self.checkpointer.stop)
            await sync_to_async(set_autocheckpoint, thread_sensitive=True)(AUTOCHECKPOINT_DEFAULT)
        log.info("bridges_stopped", gateways=[b.gateway for b in self.bridges])

    def _flush_states(self) -> None:
        states, self._states = self._states, {}
        for gateway, state in states.items():
            self.ingestor.record_connection(gateway, state)
