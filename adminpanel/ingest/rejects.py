"""Frames a gateway sent that the store cannot hold: screened out one by one, and counted.

Every event passes ``gateway_bridge.bounds`` here, whichever mode produced it
(the plugin decoder bounds its own already; observer mode's translator and
anything else are covered too). A bad event becomes a ``FrameRejected`` in its
place; the gateway's row counts them and keeps the last reason for the
gateways page, and each one is logged as ``frame_rejected``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import structlog
from django.db.models import F

from adminpanel.ingest.sql import aware
from adminpanel.models import Gateway
from gateway_bridge import bounds
from gateway_bridge.events import FrameRejected, RegistryEvent, Snapshot
from gateway_bridge.registry_decode import rejected_frame

log = structlog.get_logger("adminpanel.ingest")

# Log lines per gateway and batch; past it one summary line says how many more.
LOGGED_PER_BATCH = 20
REASON_CHARS = 500


@dataclass(slots=True)
class Rejections:
    """The rejected frames of one apply(), per gateway: (received_at, reason)."""

    by_gateway: dict[str, list[tuple[float, str]]] = field(default_factory=dict)

    def add(self, gateway: str, at: float, reason: str) -> None:
        self.by_gateway.setdefault(gateway, []).append((at, reason[:REASON_CHARS]))

    def note(self, event: RegistryEvent) -> None:
        if isinstance(event, FrameRejected):
            self.add(event.gateway, event.received_at, _frame_reason(event))
        elif isinstance(event, Snapshot):
            for reason in event.rejected:
                self.add(event.gateway, event.received_at, f"snapshot {reason}")

    def __bool__(self) -> bool:
        return bool(self.by_gateway)


def screen(events: Iterable[RegistryEvent]) -> list[RegistryEvent]:
    """Every event bounded; one that cannot be becomes a FrameRejected in its place."""
    screened = []
    for event in events:
        try:
            screened.append(bounds.bounded(event))
        except bounds.OutOfBounds as exc:
            screened.append(as_rejected(event, f"{event.kind} {exc}"))
    return screened


def as_rejected(event: RegistryEvent, reason: str) -> FrameRejected:
    """The rejection note standing in for ``event`` (in its place when its seq is usable)."""
    received = event.received_at
    if not isinstance(received, int | float) or not math.isfinite(received):
        received = time.time()  # our own clock was the bad value: now is the best we have
    payload = {"bootId": event.boot_id, "seq": event.seq, "kind": event.kind}
    return rejected_frame(event.gateway, payload, received, reason)


def record(rejections: Rejections) -> None:
    """Count each gateway's rejected frames on its row and log them (inside the batch)."""
    for name, notes in rejections.by_gateway.items():
        for _at, reason in notes[:LOGGED_PER_BATCH]:
            log.warning("frame_rejected", gateway=name, reason=reason)
        if len(notes) > LOGGED_PER_BATCH:
            log.warning("frames_rejected", gateway=name, more=len(notes) - LOGGED_PER_BATCH)
        last_at, last_reason = notes[-1]
        Gateway.objects.filter(name=name).update(
            rejected_frames=F("rejected_frames") + len(notes),
            last_rejected_at=aware(last_at),
            last_rejected_reason=last_reason,
        )


def unplaced(events: Sequence[RegistryEvent]) -> tuple[list[RegistryEvent], list[FrameRejected]]:
    """Split off rejections that have no place in the sequence (no usable boot id or seq)."""
    placed: list[RegistryEvent] = []
    loose: list[FrameRejected] = []
    for event in events:
        if isinstance(event, FrameRejected) and not event.boot_id:
            loose.append(event)
        else:
            placed.append(event)
    return placed, loose


def _frame_reason(event: FrameRejected) -> str:
    where = f"seq {event.seq}: " if event.boot_id else ""
    return f"{where}{event.reason}"
