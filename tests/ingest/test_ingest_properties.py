"""Property: however a clean stream arrives — duplicated, reordered within the
window, split into any batches — the store ends in the same state."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adminpanel.ingest import Ingestor
from bench.streams import generate
from gateway_bridge.events import RegistryEvent, Snapshot
from tests.ingest.streams import canonical_dump

WINDOW = 64
MAX_SHIFT = 6  # how far an event may arrive late, in positions; well inside WINDOW


class _Rollback(Exception):
    def __init__(self, dump: dict[str, Any]) -> None:
        self.dump = dump


def _store_after(batches: Sequence[Sequence[RegistryEvent]], now: float) -> dict[str, Any]:
    """Apply the batches to an empty store, dump it, and roll everything back."""
    try:
        with transaction.atomic():
            ingestor = Ingestor(reorder_window=WINDOW, reorder_wait_s=3600.0, clock=lambda: now)
            for batch in batches:
                ingestor.apply(batch)
            assert ingestor.apply([]).held == 0, "every held event should have been applied"
            raise _Rollback(canonical_dump())
    except _Rollback as done:
        return done.dump


def _segments(events: list[RegistryEvent]) -> list[list[RegistryEvent]]:
    """Runs of events between barriers. A bridge delivers a new boot's events and a
    snapshot's followers only after it, so reordering never crosses these."""
    segments: list[list[RegistryEvent]] = [[]]
    boot = events[0].boot_id
    for ev in events:
        if isinstance(ev, Snapshot) or ev.boot_id != boot:
            boot = ev.boot_id
            segments.extend([[ev], []])
        else:
            segments[-1].append(ev)
    return [s for s in segments if s]


def _reorder(events: list[RegistryEvent], rng: random.Random, shift: int) -> list[RegistryEvent]:
    out: list[RegistryEvent] = []
    for segment in _segments(events):
        keyed = sorted(
            ((i + rng.uniform(0, shift), i) for i in range(len(segment))), key=lambda p: p[0]
        )
        out.extend(segment[i] for _, i in keyed)
    return out


def _duplicate(events: list[RegistryEvent], rng: random.Random, rate: float) -> list[RegistryEvent]:
    """Redeliver some events again a little later (possibly after a barrier)."""
    out = list(events)
    for i in sorted((i for i in range(len(events)) if rng.random() < rate), reverse=True):
        out.insert(min(len(out), i + 1 + rng.randrange(MAX_SHIFT * 2)), events[i])
    return out


def _split(events: list[RegistryEvent], sizes: list[int]) -> list[list[RegistryEvent]]:
    batches, i, k = [], 0, 0
    while i < len(events):
        size = sizes[k % len(sizes)]
        batches.append(events[i : i + size])
        i, k = i + size, k + 1
    return batches


streams = st.builds(
    lambda seed, sessions, steps, restarts, missed: generate(
        gateway="gw", sessions=sessions, steps=steps, restarts=restarts,
        missed_stretches=missed, seed=seed, mean_gap_s=2.0,
    ),
    seed=st.integers(0, 10_000),
    sessions=st.integers(1, 4),
    steps=st.integers(10, 60),
    restarts=st.integers(0, 1),
    missed=st.integers(0, 2),
)  # fmt: skip
perturbations = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "shift": st.integers(0, MAX_SHIFT),
        "dup_rate": st.sampled_from([0.0, 0.1, 0.3]),
        "sizes": st.lists(st.integers(1, 40), min_size=1, max_size=6),
    }
)
examples = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _compare(clean: list[RegistryEvent], arrived: list[RegistryEvent], sizes: list[int]) -> None:
    now = clean[-1].at + 30.0  # late enough for some locks to look stuck or leaked
    expected = _store_after([clean], now)
    assert _store_after(_split(arrived, sizes), now) == expected


@pytest.mark.django_db(transaction=False)
@examples
@given(stream=streams, p=perturbations)
def test_duplicated_events_end_in_the_same_store_as_the_clean_stream(
    stream: list[RegistryEvent], p: dict[str, Any]
) -> None:
    rng = random.Random(p["seed"])
    _compare(stream, _duplicate(stream, rng, max(p["dup_rate"], 0.1)), p["sizes"])


@pytest.mark.django_db(transaction=False)
@examples
@given(stream=streams, p=perturbations)
def test_events_reordered_within_the_window_end_in_the_same_store(
    stream: list[RegistryEvent], p: dict[str, Any]
) -> None:
    rng = random.Random(p["seed"])
    _compare(stream, _reorder(stream, rng, max(p["shift"], 1)), p["sizes"])


@pytest.mark.django_db(transaction=False)
@examples
@given(stream=streams, p=perturbations)
def test_duplicated_and_reordered_events_in_any_batches_end_in_the_same_store(
    stream: list[RegistryEvent], p: dict[str, Any]
) -> None:
    rng = random.Random(p["seed"])
    arrived = _duplicate(_reorder(stream, rng, p["shift"]), rng, p["dup_rate"])
    _compare(stream, arrived, p["sizes"])
