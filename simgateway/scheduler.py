"""A tiny timer heap with an injectable clock.

The registry schedules everything that happens later (a turn's answer, a
waiter's timeout, a forced settle) here instead of on the event loop, so
unit tests drive time by hand with ``ManualClock`` and the server pumps the
same heap from asyncio.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class ManualClock:
    """A clock tests move by hand (epoch seconds)."""

    def __init__(self, start: float = 1_795_300_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@dataclass(order=True, slots=True)
class Timer:
    due: float
    order: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._heap: list[Timer] = []
        self._order = itertools.count()
        # Called whenever a timer is added, so an asyncio pump can wake up.
        self.on_schedule: Callable[[], None] | None = None

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(self.clock() + max(0.0, delay_s), next(self._order), callback)
        heapq.heappush(self._heap, timer)
        if self.on_schedule is not None:
            self.on_schedule()
        return timer

    def next_due(self) -> float | None:
        while self._heap and self._heap[0].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0].due if self._heap else None

    def run_due(self) -> int:
        """Fire every timer due by now, in due order. Returns how many fired."""
        fired = 0
        now = self.clock()
        while (due := self.next_due()) is not None and due <= now:
            timer = heapq.heappop(self._heap)
            timer.callback()
            fired += 1
        return fired

    def advance(self, clock: ManualClock, seconds: float) -> None:
        """Move a manual clock forward, firing timers at their own due times."""
        target = clock.now + seconds
        while (due := self.next_due()) is not None and due <= target:
            clock.now = max(clock.now, due)
            self.run_due()
        clock.now = target
