"""Traffic for a simulated gateway: a deterministic schedule of inbound messages and aborts.

``Workload`` turns a seed into the same schedule every time: Poisson arrivals
over ``sessions`` session keys (``agent:<agent>:<channel>:direct:<peer>``),
some messages hanging or failing (directives, see ``backend``), some running
turns aborted by the user. ``Workload.demo(profile)`` adds, on purpose and in
the first minute, the failure each build is known for, so every flag kind and
the dispatch-skip ledger have something to show:

- 2026.5.28: a hung run with later messages waiting forever behind it, a
  heartbeat every few seconds that the registry skips while that run holds
  the lock (``reason: active-run``, a skip burst), and an aborted wedged run
  (its backend ignores the cancel, so its owner never completes it) that
  leaks its lock for good;
- 2026.5.3: sequential sends to one session that alternate fail / pass;
- 2026.9: a hung run with a message in its follow-up queue (healed by stale
  takeover after ``stale_takeover_s``), follow-up turns behind it whose
  bounded waits time out and are skipped, and an aborted wedged run (forced
  settle).

Heartbeats and follow-ups repeat for as long as the workload runs (``Repeat``),
as a real gateway's heartbeat does: while the hung lock stays, the skips keep
coming; once an operator clears it, they are admitted again.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol


class Target(Protocol):
    """What a workload drives: ``SimGateway`` has these."""

    @property
    def running(self) -> bool: ...

    def send_inbound(self, session_key: str, text: str, *, turn_kind: str = "visible") -> str: ...

    def abort(self, session_key: str, run_id: str | None = None) -> list[str]: ...


@dataclass(frozen=True, slots=True, order=True)
class Action:
    at_s: float
    session_key: str = field(compare=False)
    text: str = field(compare=False, default="")
    abort: bool = field(compare=False, default=False)
    turn_kind: str = field(compare=False, default="visible")

    def apply(self, target: Target) -> None:
        if self.abort:
            target.abort(self.session_key)
        else:
            target.send_inbound(self.session_key, self.text, turn_kind=self.turn_kind)


@dataclass(frozen=True, slots=True)
class Repeat:
    """A message sent to one session every ``every_s`` seconds from ``first_at_s`` on, for good."""

    first_at_s: float
    every_s: float
    session_key: str
    text: str
    turn_kind: str = "visible"

    def actions(self) -> Iterator[Action]:
        for n in itertools.count():
            yield Action(self.first_at_s + n * self.every_s, self.session_key, self.text,
                         turn_kind=self.turn_kind)  # fmt: skip


def session_key(agent: str, channel: str, peer: str) -> str:
    return f"agent:{agent}:{channel}:direct:{peer}"


@dataclass(frozen=True, slots=True)
class Workload:
    seed: int = 0
    sessions: int = 12
    agents: tuple[str, ...] = ("main", "support")
    channels: tuple[str, ...] = ("telegram", "whatsapp", "discord")
    rate: float = 0.5  # inbound messages per second, all sessions together
    # The gateway's turn-duration knob; the CLI passes it on as ``turn_median_s``.
    turn_median_s: float = 0.8
    hang_rate: float = 0.0
    fail_rate: float = 0.0
    abort_rate: float = 0.0  # a user /stop shortly after a message
    scripted: tuple[Action, ...] = ()
    repeats: tuple[Repeat, ...] = ()

    def session_keys(self) -> list[str]:
        return [
            session_key(
                self.agents[i % len(self.agents)],
                self.channels[(i // len(self.agents)) % len(self.channels)],
                str(1000 + i),
            )
            for i in range(self.sessions)
        ]

    def steady(self) -> Iterator[Action]:
        """The endless random part of the schedule, the same for the same seed."""
        if self.rate <= 0 or self.sessions <= 0:
            return
        rng = random.Random(self.seed)
        keys = self.session_keys()
        at = 0.0
        for n in itertools.count(1):
            at += rng.expovariate(self.rate)
            key = rng.choice(keys)
            yield Action(at, key, self._text(rng, n))
            if rng.random() < self.abort_rate:
                yield Action(at + rng.uniform(0.2, 1.0), key, abort=True)

    def _text(self, rng: random.Random, n: int) -> str:
        text = f"message {n} MSG-{rng.getrandbits(16):04x}"
        roll = rng.random()
        if roll < self.hang_rate:
            return f"{text} HANG"
        if roll < self.hang_rate + self.fail_rate:
            return f"{text} FAIL"
        return text

    def schedule(self) -> Iterator[Action]:
        """Scripted, repeated and steady actions in time order (aborts may trail a little)."""
        repeated = (r.actions() for r in self.repeats)
        return heapq.merge(sorted(self.scripted), *repeated, _sorted_stream(self.steady()))

    async def run(self, target: Target, stop_event: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for action in self.schedule():
            delay = started + action.at_s - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop_event.wait(), delay)
            if stop_event.is_set() or not target.running:
                return
            action.apply(target)

    @classmethod
    def steady_preset(cls, *, seed: int, rate: float, sessions: int) -> Workload:
        return cls(
            seed=seed, rate=rate, sessions=sessions, hang_rate=0.01, fail_rate=0.03, abort_rate=0.02
        )

    @classmethod
    def demo(cls, profile: str, *, seed: int, rate: float, sessions: int) -> Workload:
        return cls(
            seed=seed,
            rate=rate,
            sessions=sessions,
            fail_rate=0.03,
            scripted=DEMO_SCRIPTS.get(profile, ()),
            repeats=DEMO_REPEATS.get(profile, ()),
        )


def _sorted_stream(actions: Iterator[Action], slack: int = 8) -> Iterator[Action]:
    """Sort a nearly sorted endless stream (aborts trail their message by < 1 s)."""
    heap: list[Action] = []
    for action in actions:
        heapq.heappush(heap, action)
        if len(heap) > slack:
            yield heapq.heappop(heap)
    while heap:
        yield heapq.heappop(heap)


# The demo's stuck sessions hang at once, so a notice for them can go out
# RUNBOARD_STUCK_AFTER_S after the demo starts.
HUNG_AT_S = 1.0


def _script_2026_5_28() -> tuple[Action, ...]:
    hung = session_key("main", "telegram", "demo-hung")
    leaked = session_key("support", "whatsapp", "demo-aborted")
    return (
        Action(HUNG_AT_S, hung, "please look at this HANG-a1a1"),
        Action(8.0, leaked, "long question WEDGE"),
        Action(12.0, hung, "second message, still there?"),
        # /stop of a wedged turn: the backend ignores the cancel, the lock leaks for good.
        Action(14.0, leaked, abort=True),
        Action(20.0, hung, "third message, hello??"),
        Action(25.0, leaked, "hello? anyone"),
    )


def _script_2026_5_3() -> tuple[Action, ...]:
    key = session_key("main", "telegram", "demo-alternating")
    # Sequential: each 1 s turn is done long before the next send.
    return tuple(Action(5.0 + 4.0 * i, key, f"ok-{i + 1} STALL:1") for i in range(10))


def _script_2026_9() -> tuple[Action, ...]:
    hung = session_key("main", "discord", "demo-hung")
    wedged = session_key("support", "telegram", "demo-wedged")
    return (
        Action(HUNG_AT_S, hung, "please look at this HANG-b1b1"),
        Action(8.0, wedged, "run the tool WEDGE"),
        Action(12.0, hung, "second message, still there?"),
        Action(15.0, wedged, abort=True),  # terminal but held: forced settle later
    )


DEMO_SCRIPTS: dict[str, tuple[Action, ...]] = {
    "2026.5.28": _script_2026_5_28(),
    "2026.5.3": _script_2026_5_3(),
    "2026.9": _script_2026_9(),
}


def _repeats_2026_5_28() -> tuple[Repeat, ...]:
    # A heartbeat turn cannot wait: while the hung run holds the lock, each is skipped.
    hung = session_key("main", "telegram", "demo-hung")
    return (Repeat(3.0, 8.0, hung, "heartbeat: anything to report?", "heartbeat"),)


def _repeats_2026_9() -> tuple[Repeat, ...]:
    # A follow-up turn waits followup_wait_s (15 s) for the hung lock, then is skipped.
    hung = session_key("main", "discord", "demo-hung")
    return (Repeat(3.0, 10.0, hung, "follow-up: did that work?", "queued_followup"),)


DEMO_REPEATS: dict[str, tuple[Repeat, ...]] = {
    "2026.5.28": _repeats_2026_5_28(),
    "2026.9": _repeats_2026_9(),
}
