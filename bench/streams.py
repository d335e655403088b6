"""Realistic registry event streams, generated deterministically from a seed.

A small model of one gateway's reply-run registry: sessions get locked by a
run that moves through its phases and ends; messages arriving meanwhile wait
or are skipped; follow-up drains fail now and then; some runs leak (they end
but never release, the seeds' bug); the gateway restarts, and the bridge
sometimes misses a stretch of changes and resyncs from a snapshot.

Used by the ingest benchmark (a "recorded" stream saved as JSON lines under
``var/bench/`` the first time) and by the store's property tests (small
streams, any seed).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gateway_bridge.events import (
    EVENTS_BY_KIND,
    DispatchSkipped,
    FollowupDrainFailed,
    GatewayStarted,
    GatewayStopping,
    LockAcquired,
    LockReleased,
    PhaseChanged,
    RegistryEvent,
    RunActivity,
    RunEnded,
    SessionStatusChanged,
    Snapshot,
    SnapshotEntry,
    SnapshotWaiter,
    WaiterAdded,
    WaiterResolved,
)

BENCH_DIR = Path(__file__).resolve().parent.parent / "var" / "bench"
START_AT = 1_800_000_000.0
_PHASES = ("queued", "preflight_compacting", "memory_flushing", "running")


@dataclass(slots=True)
class _Lock:
    run_id: str
    phase: str = "queued"
    result: str = ""
    turn_kind: str = "visible"
    started_at: float = 0.0
    last_activity_at: float = 0.0
    leaked: bool = False


@dataclass(slots=True)
class _Waiting:
    waiter_id: str
    since: float
    timeout_ms: int | None
    text: str


@dataclass(slots=True)
class _Key:
    key: str
    status: str = ""
    lock: _Lock | None = None
    waiters: list[_Waiting] = field(default_factory=list)


class StreamBuilder:
    """Emits a clean stream: strictly increasing seq per boot, events in order."""

    def __init__(
        self,
        *,
        gateway: str,
        sessions: int,
        seed: int,
        mean_gap_s: float,
        start_at: float,
        leak_rate: float = 0.5,
    ) -> None:
        self.rng = random.Random(seed)
        self.gateway = gateway
        self.keys = [_Key(_session_key(i)) for i in range(sessions)]
        self.mean_gap_s = mean_gap_s
        self.at = start_at
        self.boot = 0
        self.boot_id = ""
        self.seq = 0
        self.counter = 0
        self.leak_rate = leak_rate
        self.muted = False  # the bridge is not listening: changes happen unseen
        self.events: list[RegistryEvent] = []

    # Emission ---------------------------------------------------------------------

    def _emit(self, cls: type[RegistryEvent], **kw: Any) -> None:
        self.seq += 1
        self.at += self.rng.expovariate(1.0 / self.mean_gap_s)
        if self.muted:
            return
        self.events.append(
            cls(
                gateway=self.gateway,
                boot_id=self.boot_id,
                seq=self.seq,
                at=round(self.at, 6),
                received_at=round(self.at + 0.002, 6),
                **kw,
            )
        )

    def _next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.boot}-{self.counter}"

    # Gateway lifecycle ------------------------------------------------------------

    def start_boot(self) -> None:
        self.boot += 1
        self.boot_id = f"boot-{self.boot}-{self.rng.getrandbits(32):08x}"
        self.seq = 0
        for k in self.keys:  # a new process has an empty registry
            k.lock, k.waiters = None, []
        self._emit(GatewayStarted, version="2026.9.6", profile="2026.9")

    def stop_boot(self) -> None:
        self._emit(GatewayStopping, reason="restart", restart_expected_ms=1500)

    def miss_stretch(self, steps: int) -> None:
        """The bridge misses ``steps`` changes, then resyncs from a snapshot."""
        self.muted = True
        for _ in range(steps):
            self.step()
        self.muted = False
        self.at += 0.01
        self.events.append(self._snapshot())

    def _snapshot(self) -> Snapshot:
        entries = tuple(
            SnapshotEntry(
                session_key=k.key,
                run_id=k.lock.run_id,
                phase=k.lock.phase,
                result=k.lock.result,
                started_at=k.lock.started_at,
                last_activity_at=k.lock.last_activity_at,
                turn_kind=k.lock.turn_kind,
                waiters=tuple(
                    SnapshotWaiter(
                        waiter_id=w.waiter_id,
                        since=w.since,
                        timeout_ms=w.timeout_ms,
                        message_text=w.text,
                        message_preview=w.text[:120],
                    )
                    for w in k.waiters
                ),
            )
            for k in self.keys
            if k.lock is not None
        )
        statuses = {k.key: k.status for k in self.keys if k.status}
        return Snapshot(
            gateway=self.gateway,
            boot_id=self.boot_id,
            seq=self.seq,
            at=round(self.at, 6),
            received_at=round(self.at + 0.002, 6),
            entries=entries,
            session_statuses=statuses,
            version="2026.9.6",
            profile="2026.9",
        )

    # One registry change ----------------------------------------------------------

    def step(self) -> None:
        k = self.rng.choice(self.keys)
        if k.lock is None:
            # Most sessions are idle most of the time: a new message is not due yet.
            if self.rng.random() < 0.3:
                self._acquire(k)
        elif k.lock.leaked:
            self._while_leaked(k)
        elif k.lock.result:
            self._release(k)
        else:
            self._progress(k)

    def _acquire(self, k: _Key) -> None:
        run_id = self._next_id("run")
        turn = self.rng.choices(("visible", "queued_followup", "heartbeat"), (8, 2, 1))[0]
        self._emit(
            LockAcquired,
            session_key=k.key,
            run_id=run_id,
            session_id=f"sid-{k.key[-4:]}",
            turn_kind=turn,
            message_id=self._next_id("msg"),
            message_preview="hello",
        )
        at = round(self.at, 6)
        k.lock = _Lock(run_id, turn_kind=turn, started_at=at, last_activity_at=at)
        if k.status != "running":
            k.status = "running"
            self._emit(SessionStatusChanged, session_key=k.key, status="running")

    def _progress(self, k: _Key) -> None:
        lock = k.lock
        assert lock is not None
        roll = self.rng.random()
        if roll < 0.12:
            self._wait(k)
        elif roll < 0.17:
            self._skip(k)
        elif roll < 0.20:
            self._emit(
                FollowupDrainFailed,
                session_key=k.key,
                blocking_run_id=lock.run_id,
                message=f"Reply run already active for {k.key}",
                message_id=self._next_id("msg"),
                message_preview="again",
                message_text="again",
            )
        elif lock.phase != "running":
            lock.phase = _PHASES[_PHASES.index(lock.phase) + 1]
            self._emit(PhaseChanged, session_key=k.key, run_id=lock.run_id, phase=lock.phase)
            lock.last_activity_at = round(self.at, 6)
        elif roll < 0.75:
            self._emit(RunActivity, session_key=k.key, run_id=lock.run_id, activity="delta")
            lock.last_activity_at = round(self.at, 6)
        else:
            self._end(k)

    def _end(self, k: _Key) -> None:
        lock = k.lock
        assert lock is not None
        lock.result = self.rng.choices(("completed", "failed", "aborted"), (8, 1, 1))[0]
        lock.phase = lock.result
        code = {"completed": "", "failed": "run_failed", "aborted": "aborted_by_user"}
        self._emit(
            RunEnded,
            session_key=k.key,
            run_id=lock.run_id,
            result=lock.result,
            code=code[lock.result],
        )
        # The seeds' leak: an aborted running operation never reaches its clear step.
        lock.leaked = lock.result == "aborted" and self.rng.random() < self.leak_rate

    def _wait(self, k: _Key) -> None:
        lock = k.lock
        assert lock is not None
        text = f"message {self.counter} for {k.key}"
        waiting = _Waiting(self._next_id("w"), 0.0, self.rng.choice((None, 15_000)), text)
        self._emit(
            WaiterAdded,
            session_key=k.key,
            waiter_id=waiting.waiter_id,
            timeout_ms=waiting.timeout_ms,
            blocking_run_id=lock.run_id,
            message_id=self._next_id("msg"),
            message_preview=text[:120],
            message_text=text,
        )
        waiting.since = round(self.at, 6)
        k.waiters.append(waiting)

    def _skip(self, k: _Key) -> None:
        lock = k.lock
        assert lock is not None
        self._emit(
            DispatchSkipped,
            session_key=k.key,
            reason="active-run",
            blocking_run_id=lock.run_id,
            message_id=self._next_id("msg"),
            message_preview="skipped",
            message_text="skipped",
        )

    def _while_leaked(self, k: _Key) -> None:
        roll = self.rng.random()
        if roll < 0.4:
            self._wait(k)
        elif roll < 0.7:
            self._skip(k)
        elif roll < 0.8 and k.status == "running":
            k.status = "done"  # the store says done while the lock is still held
            self._emit(SessionStatusChanged, session_key=k.key, status="done")
        # else: nothing happens to a leaked session; this step is a no-op

    def _release(self, k: _Key) -> None:
        lock = k.lock
        assert lock is not None
        how = self.rng.choices(("normal", "forced_settle"), (19, 1))[0]
        self._emit(LockReleased, session_key=k.key, run_id=lock.run_id, how=how)
        for w in k.waiters:
            outcome = "timed_out" if w.timeout_ms and self.rng.random() < 0.3 else "admitted"
            self._emit(WaiterResolved, session_key=k.key, waiter_id=w.waiter_id, outcome=outcome)
        k.lock, k.waiters = None, []
        status = "failed" if lock.result == "failed" else "done"
        if k.status != status:
            k.status = status
            self._emit(SessionStatusChanged, session_key=k.key, status=status)


def _session_key(i: int) -> str:
    channel = ("telegram", "discord", "octo", "slack")[i % 4]
    return f"agent:main:{channel}:direct:{1000 + i}"


def generate(
    *,
    gateway: str = "bench",
    sessions: int = 1000,
    steps: int = 150_000,
    restarts: int = 1,
    missed_stretches: int = 0,
    seed: int = 1,
    mean_gap_s: float = 0.005,
    start_at: float = START_AT,
    leak_rate: float = 0.5,
) -> list[RegistryEvent]:
    """A clean stream: ``steps`` registry changes split over ``restarts + 1`` boots.

    ``missed_stretches`` times, a few changes go unseen and a snapshot follows.
    ``leak_rate``: the share of aborted runs that never release their lock.
    Changes emit one or more events each, so the stream is longer than ``steps``.
    """
    b = StreamBuilder(
        gateway=gateway,
        sessions=sessions,
        seed=seed,
        mean_gap_s=mean_gap_s,
        start_at=start_at,
        leak_rate=leak_rate,
    )
    boots = restarts + 1
    per_boot = max(1, steps // boots)
    for boot in range(boots):
        b.start_boot()
        gaps = {b.rng.randrange(per_boot) for _ in range(missed_stretches if boot == 0 else 0)}
        for i in range(per_boot):
            if i in gaps:
                b.miss_stretch(b.rng.randint(1, 6))
            else:
                b.step()
        if boot < boots - 1:
            b.stop_boot()
    return b.events


def generate_events(count: int, **kw: Any) -> list[RegistryEvent]:
    """Exactly ``count`` events (steps raised until the stream is long enough)."""
    steps = count
    while True:
        events = generate(steps=steps, **kw)
        if len(events) >= count:
            return events[:count]
        steps = int(steps * 1.2) + 1


# --- JSON lines ------------------------------------------------------------------------


def to_json(event: RegistryEvent) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": event.kind}
    for f in fields(event):
        value = getattr(event, f.name)
        if f.name == "entries":
            value = [_entry_json(e) for e in value]
        elif isinstance(value, frozenset):
            value = sorted(value)
        data[f.name] = value
    return data


def _entry_json(entry: SnapshotEntry) -> dict[str, Any]:
    data = {f.name: getattr(entry, f.name) for f in fields(entry)}
    data["waiters"] = [{f.name: getattr(w, f.name) for f in fields(w)} for w in entry.waiters]
    return data


def from_json(data: dict[str, Any]) -> RegistryEvent:
    data = dict(data)
    cls = EVENTS_BY_KIND[data.pop("kind")]
    if cls is Snapshot:
        data["entries"] = tuple(
            SnapshotEntry(**{**e, "waiters": tuple(SnapshotWaiter(**w) for w in e["waiters"])})
            for e in data["entries"]
        )
        data["rejected"] = tuple(data.get("rejected", ()))
        data["unread_keys"] = frozenset(data.get("unread_keys", ()))
    return cls(**data)


def save(events: list[RegistryEvent], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as fh:
        for ev in events:
            fh.write(json.dumps(to_json(ev), separators=(",", ":")) + "\n")
    tmp.replace(path)


def load(path: Path) -> list[RegistryEvent]:
    with path.open() as fh:
        return [from_json(json.loads(line)) for line in fh]


def recorded_stream(
    name: str = "ingest-200k-1000s-v2", *, count: int = 200_000, sessions: int = 1000
) -> list[RegistryEvent]:
    """The benchmark's stream: generated once, then replayed from ``var/bench/``.

    A production-like mix: a few percent of aborted runs leak (the seeds' bug is
    rare per run but piles up per session), one restart, one missed stretch.
    """
    path = BENCH_DIR / f"{name}.jsonl"
    if not path.exists():
        events = generate_events(
            count,
            sessions=sessions,
            seed=20260528,
            restarts=1,
            missed_stretches=1,
            leak_rate=0.05,
        )
        save(events, path)
    return load(path)
