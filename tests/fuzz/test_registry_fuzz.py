"""Registry payloads and snapshots from a hostile gateway, decoded and ingested.

Nothing raises but the typed ``DecodeError`` (and ``decode_or_reject`` never
raises); ingest never crashes on what the decoder lets through, and the good
events around bad ones are stored, in their places.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from hypothesis import given
from hypothesis import strategies as st

from adminpanel.ingest import Ingestor
from adminpanel.models import Gateway, TimelineEvent
from gateway_bridge.events import FrameRejected, RegistryEvent
from gateway_bridge.registry_decode import DecodeError, decode_or_reject, decode_snapshot
from tests.fuzz.strategies import fuzz, json_values, mutated

NOW = 1_795_308_600.0
KEY = "agent:main:telegram:direct:1"
COMMON = {"bootId": "boot-1", "ts": (NOW - 30) * 1000, "sessionKey": KEY}
MESSAGE = {"messageId": "m-1", "preview": "hi", "text": "hello"}
WIRE: dict[str, dict[str, Any]] = {
    "started": {"version": "2026.9", "profile": "p"},
    "stopping": {"reason": "restart", "restartExpectedMs": 500},
    "acquired": {"runId": "run-1", "sessionId": "s-1", "phase": "queued", "turnKind": "visible"},
    "phase": {"runId": "run-1", "phase": "running"},
    "activity": {"runId": "run-1", "activity": "tool"},
    "ended": {"runId": "run-1", "result": "completed", "code": ""},
    "released": {"runId": "run-1", "how": "normal"},
    "waiter.added": {
        "waiterId": "w-1",
        "timeoutMs": 1000,
        "turnKind": "visible",
        "blockingRunId": "run-1",
        **MESSAGE,
    },
    "waiter.resolved": {"waiterId": "w-1", "outcome": "admitted"},
    "skipped": {"reason": "active-run", "blockingRunId": "run-1", **MESSAGE},
    "drain.failed": {"error": "E", "message": "m", **MESSAGE},
    "session.status": {"status": "running", "sessionId": "s-1"},
}
ENTRY = {
    "sessionKey": KEY,
    "runId": "run-1",
    "sessionId": "s-1",
    "phase": "running",
    "result": None,
    "startedAtMs": (NOW - 60) * 1000,
    "lastActivityAtMs": None,
    "turnKind": "visible",
    "waiters": [
        {
            "waiterId": "w-1",
            "sinceMs": (NOW - 50) * 1000,
            "timeoutMs": None,
            "turnKind": "visible",
            **MESSAGE,
        }
    ],
}


def wire(kind: str, seq: int) -> dict[str, Any]:
    return {"kind": kind, "seq": seq, **COMMON, **WIRE[kind]}


any_event = st.sampled_from(sorted(WIRE)).flatmap(lambda kind: mutated(wire(kind, 1)))
snapshots = st.builds(
    lambda entries, sessions, top: {
        "bootId": "boot-1",
        "seq": 9,
        "ts": NOW * 1000,
        "version": "v",
        "entries": entries,
        "sessions": sessions,
        **top,
    },
    st.lists(st.one_of(mutated(ENTRY), json_values), max_size=4),
    st.one_of(st.just({KEY: "running"}), st.dictionaries(st.text(max_size=5), json_values)),
    st.one_of(st.just({}), st.dictionaries(st.sampled_from(["ts", "seq", "version"]), json_values)),
)


@fuzz
@given(st.one_of(any_event, json_values))
def test_decode_or_reject_answers_an_event_for_any_payload(payload: object) -> None:
    assert isinstance(decode_or_reject("gw", payload, NOW), RegistryEvent)


@fuzz
@given(snapshots)
def test_a_snapshot_decodes_or_raises_decode_error(payload: dict[str, Any]) -> None:
    try:
        snapshot = decode_snapshot("gw", payload, NOW)
    except DecodeError:
        return
    assert len(snapshot.entries) + len(snapshot.rejected) >= len(payload["entries"])


@st.composite
def streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A gateway's events 1..n, some with hostile values (their bootId and seq kept)."""
    kinds = draw(st.lists(st.sampled_from(sorted(WIRE)), min_size=1, max_size=12))
    out = []
    for seq, kind in enumerate(kinds, start=1):
        good = wire(kind, seq)
        bad = draw(st.booleans()) and draw(st.booleans())
        out.append(draw(mutated(good, keep=("bootId", "seq"))) if bad else good)
    return out


class _Rollback(Exception):
    pass


@pytest.mark.django_db
@fuzz
@given(streams(), st.integers(1, 12))
def test_ingest_stores_every_good_event_around_bad_ones(
    payloads: list[dict[str, Any]], batch: int
) -> None:
    events = [decode_or_reject("gw", p, NOW) for p in payloads]
    good = {e.seq for e in events if not isinstance(e, FrameRejected)}
    with pytest.raises(_Rollback), transaction.atomic():
        ingestor = Ingestor(clock=lambda: NOW)
        for i in range(0, len(events), batch):
            ingestor.apply(events[i : i + batch])
        stored = dict(TimelineEvent.objects.filter(seq__isnull=False).values_list("seq", "kind"))
        assert good <= set(stored)
        assert {s for s, kind in stored.items() if kind == "frame_rejected"} == (
            set(range(1, len(events) + 1)) - good
        )
        assert Gateway.objects.get(name="gw").last_seq == len(events)
        raise _Rollback


@pytest.mark.django_db
@fuzz
@given(snapshots)
def test_ingest_takes_any_snapshot_that_decodes(payload: dict[str, Any]) -> None:
    try:
        snapshot = decode_snapshot("gw", payload, NOW)
    except DecodeError:
        return
    with pytest.raises(_Rollback), transaction.atomic():
        Ingestor(clock=lambda: NOW).apply([snapshot])
        assert Gateway.objects.get(name="gw").last_seq == snapshot.seq
        raise _Rollback
