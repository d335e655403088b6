"""The benchmarks' recorded stream: every event survives the JSON lines round trip."""

from __future__ import annotations

from pathlib import Path

from bench.streams import generate_events, load, save
from gateway_bridge.events import Snapshot


def test_a_generated_stream_with_snapshots_saves_and_loads_unchanged(tmp_path: Path) -> None:
    events = generate_events(
        3000, sessions=50, seed=7, restarts=1, missed_stretches=1, leak_rate=0.05
    )
    assert any(isinstance(ev, Snapshot) for ev in events)
    path = tmp_path / "stream.jsonl"
    save(events, path)
    assert load(path) == events


def test_a_snapshot_with_rejected_entries_and_unread_keys_round_trips(tmp_path: Path) -> None:
    snapshot = Snapshot(
        gateway="gw", boot_id="b", seq=9, at=1.0, received_at=1.0,
        rejected=("startedAtMs is not finite",), unread_keys=frozenset({"k1", "k2"}),
    )  # fmt: skip
    path = tmp_path / "stream.jsonl"
    save([snapshot], path)
    assert load(path) == [snapshot]
