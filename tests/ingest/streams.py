"""Helpers for the ingest tests: hand-built event sequences and a canonical dump of the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adminpanel.models import DispatchSkip, Flag, Gateway, Run, Session, TimelineEvent, Waiter
from gateway_bridge.events import RegistryEvent

T0 = 1_800_000_000.0
SESSION_COLUMNS = tuple(
    f.name for f in Session._meta.concrete_fields if f.name not in ("id", "gateway")
)
KEY = "agent:main:telegram:direct:42"
OTHER = "agent:main:discord:direct:7"


@dataclass
class GatewayScript:
    """Numbers events the way one gateway process would: seq 1, 2, 3 … within a boot."""

    name: str = "gw"
    boot_id: str = "boot-a"
    seq: int = 0
    at: float = T0
    log: list[RegistryEvent] = field(default_factory=list)

    def next(self, cls: type[RegistryEvent], *, dt: float = 1.0, **kw: Any) -> RegistryEvent:
        self.seq += 1
        self.at += dt
        event = cls(
            gateway=self.name,
            boot_id=self.boot_id,
            seq=self.seq,
            at=self.at,
            received_at=self.at,
            **kw,
        )
        self.log.append(event)
        return event

    def restart(self, boot_id: str) -> None:
        self.boot_id, self.seq = boot_id, 0


def canonical_dump() -> dict[str, list[tuple[Any, ...]]]:
    """Everything ingest wrote that must not depend on batching or arrival order."""
    key = "session__session_key"
    return {
        "gateways": sorted(
            Gateway.objects.values_list(
                "name", "boot_id", "last_seq", "past_boot_ids", "version", "profile"
            )
        ),
        # Every column of the model: a column added to Session is compared without a change here.
        "sessions": sorted(Session.objects.values_list("gateway__name", *SESSION_COLUMNS)),
        "runs": sorted(
            Run.objects.values_list(
                "gateway__name",
                key,
                "run_id",
                "boot_id",
                "gateway_session_id",
                "turn_kind",
                "message_id",
                "preview",
                "phase",
                "result",
                "code",
                "started_at",
                "last_activity_at",
                "ended_at",
                "released_at",
                "release_how",
            )
        ),
        "waiters": sorted(
            Waiter.objects.values_list(
                key,
                "boot_id",
                "waiter_id",
                "blocking_run_id",
                "timeout_ms",
                "since",
                "turn_kind",
                "message_id",
                "preview",
                "text",
                "resolved_at",
                "outcome",
            ),
            key=repr,
        ),
        "skips": sorted(
            DispatchSkip.objects.values_list(
                "gateway__name",
                key,
                "kind",
                "reason",
                "error",
                "at",
                "blocking_run_id",
                "message_id",
                "preview",
                "text",
                "boot_id",
                "seq",
            ),
            key=repr,
        ),
        # Active flags only, and not their ``since``/``why``: with a fixed clock an
        # intermediate batch may raise a flag that a later one keeps or clears.
        "flags": sorted(
            (k, code, sev, repr(details))
            for k, code, sev, details in Flag.objects.filter(cleared_at__isnull=True).values_list(
                key, "code", "severity", "details"
            )
        ),
        "timeline": sorted(
            TimelineEvent.objects.values_list(
                "gateway__name", "boot_id", "seq", "kind", key, "run_id", "at"
            ),
            key=repr,
        ),
    }
