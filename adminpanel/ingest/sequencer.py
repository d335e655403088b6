"""Per-gateway ordering of registry events by (boot, seq): pure, no database."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway_bridge.events import RegistryEvent, Snapshot

# Past boots remembered per gateway, so a late event from one is recognised as stale.
PAST_BOOTS_KEPT = 16
# Held events kept per gateway, as a multiple of the reorder window; past it the
# oldest are dropped (a snapshot is due anyway and will cover them).
HELD_CAP_FACTOR = 4


@dataclass(slots=True)
class Held:
    event: RegistryEvent
    held_at: float


@dataclass(slots=True)
class Sequencer:
    """Puts one gateway's events in (boot, seq) order; what comes out is applied."""

    boot_id: str
    last_seq: int
    past_boots: list[str]
    held: dict[tuple[str, int], Held]
    ready: list[RegistryEvent] = field(default_factory=list)
    boots_started: list[tuple[str, str]] = field(default_factory=list)  # (old, new)
    duplicates: int = 0

    def offer(self, event: RegistryEvent, now: float) -> None:
        if event.boot_id in self.past_boots:
            self.duplicates += 1
        elif event.boot_id == self.boot_id:
            self._offer_same_boot(event, now)
        elif isinstance(event, Snapshot) or event.seq <= 1:
            self._take(event)
        else:
            self._hold(event, now)

    def _offer_same_boot(self, event: RegistryEvent, now: float) -> None:
        if event.seq <= self.last_seq:
            self.duplicates += 1
        elif isinstance(event, Snapshot) or event.seq == self.last_seq + 1:
            self._take(event)
        else:
            self._hold(event, now)

    def _hold(self, event: RegistryEvent, now: float) -> None:
        key = (event.boot_id, event.seq)
        if key in self.held:
            self.duplicates += 1
        else:
            self.held[key] = Held(event, now)

    def _take(self, event: RegistryEvent) -> None:
        if event.boot_id != self.boot_id:
            self._start_boot(event.boot_id)
        self.last_seq = event.seq
        if isinstance(event, Snapshot):
            # The snapshot already contains every change up to its seq.
            stale = [k for k in self.held if k[0] == self.boot_id and k[1] <= event.seq]
            for key in stale:
                del self.held[key]
        self.ready.append(event)
        self._drain()

    def _start_boot(self, boot_id: str) -> None:
        old = self.boot_id
        if old:
            self.past_boots = [*self.past_boots, old][-PAST_BOOTS_KEPT:]
        self.boots_started.append((old, boot_id))
        self.boot_id = boot_id
        # Whatever was held for the old process will never be completed.
        for key in [k for k in self.held if k[0] == old or k[0] in self.past_boots]:
            del self.held[key]

    def _drain(self) -> None:
        nxt = self.held.pop((self.boot_id, self.last_seq + 1), None)
        while nxt is not None:
            self.last_seq += 1
            self.ready.append(nxt.event)
            nxt = self.held.pop((self.boot_id, self.last_seq + 1), None)

    def trim(self, cap: int) -> None:
        if len(self.held) > cap:
            for key in sorted(self.held)[: len(self.held) - cap]:
                del self.held[key]

    def needs_snapshot(self, now: float, window: int, wait_s: float) -> bool:
        if not self.held:
            return False
        oldest = min(h.held_at for h in self.held.values())
        return len(self.held) > window or now - oldest > wait_s
