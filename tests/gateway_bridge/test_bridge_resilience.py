"""The bridge's reconnect policy, observer mode and failure handling."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from gateway_bridge.connection import Bridge, full_jitter_delay
from gateway_bridge.events import LockAcquired, RegistryEvent, SessionStatusChanged, Snapshot
from tests.gateway_bridge.scripted import ScriptedGateway, now_ms, until
from tests.gateway_bridge.support import ListSink, StateLog, running
from tests.support.fixtures_sim import SimGatewayFactory

KEY = "agent:main:telegram:direct:carol"


def fast_bridge(url: str, sink: Any, *, token: str = "sim-token", **options: Any) -> Bridge:
    settings: dict[str, Any] = {
        "call_timeout_s": 2.0,
        "connect_timeout_s": 2.0,
        "backoff_initial_s": 0.02,
        "backoff_max_s": 0.1,
        "batch_wait_s": 0.01,
        "rng": random.Random(3),
        **options,
    }
    return Bridge(gateway="gw", url=url, token=token, sink=sink, **settings)


def test_full_jitter_stays_under_the_doubling_ceiling_and_the_cap() -> None:
    rng = random.Random(0)

    for failures in range(12):
        ceiling = min(30.0, 0.5 * 2**failures)
        delays = [full_jitter_delay(failures, 0.5, 30.0, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # jittered over the whole range, not pinned low


def test_full_jitter_survives_absurd_failure_counts() -> None:
    assert 0.0 <= full_jitter_delay(10_000, 0.5, 30.0, random.Random(0)) <= 30.0


async def test_a_gateway_still_starting_is_retried_until_it_is_ready(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.9", start_delay_s=0.3)
    sink = ListSink()
    states = StateLog()
    async with running(fast_bridge(gw.url, sink, on_state=states)) as bridge:
        await until(lambda: bool(sink.snapshots()))
        state = bridge.state

    assert state.status == "connected"
    assert "gateway starting" in [s.last_error for s in states.states]


async def test_a_wrong_token_leaves_the_bridge_disconnected_with_the_reason(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.9")
    sink = ListSink()
    async with running(fast_bridge(gw.url, sink, token="not-the-token")) as bridge:
        await until(lambda: bridge.state.last_error != "")
        state = bridge.state

    assert state.status == "disconnected"
    assert "mismatch" in state.last_error
    assert sink.events == []


class FlakySink(ListSink):
    """A real sink whose store fails once, as a locked database would."""

    def __init__(self) -> None:
        super().__init__()
        self.failures_left = 1

    async def __call__(self, events: Sequence[RegistryEvent]) -> bool:
        if not isinstance(events[0], Snapshot) and self.failures_left:
            self.failures_left -= 1
            raise RuntimeError("database is locked")
        return await super().__call__(events)


async def test_a_failing_sink_is_repaired_with_a_snapshot_and_the_stream_goes_on(
    sim_gateway: SimGatewayFactory,
) -> None:
    gw = await sim_gateway(profile="2026.5.28", turn_median_s=0.05, turn_cap_s=0.1)
    sink = FlakySink()
    async with running(fast_bridge(gw.url, sink)) as bridge:
        await until(lambda: bool(sink.snapshots()))
        run_id = gw.send_inbound(KEY, "please HANG")
        await until(lambda: len(sink.snapshots()) == 2)
        gw.send_inbound(KEY + ":2", "hello")
        await until(lambda: bool(sink.of_kind(LockAcquired, session_key=KEY + ":2")))
        state = bridge.state

    # The lost batch's lock is in the repair snapshot.
    assert [e.run_id for e in sink.snapshots()[1].entries] == [run_id]
    assert state.status == "connected"


async def test_observer_mode_mirrors_session_statuses_from_sessions_list() -> None:
    statuses = {KEY: "running", "agent:main:slack:direct:dave": "done"}

    def sessions_list(_: object) -> dict[str, Any]:
        rows = [
            {"key": k, "status": s, "hasActiveRun": s == "running"} for k, s in statuses.items()
        ]
        return {"ts": now_ms(), "count": len(rows), "sessions": rows}

    gw = ScriptedGateway(methods=["health", "sessions.list", "chat.abort"])
    gw.answers["sessions.list"] = sessions_list
    sink = ListSink()
    async with gw:
        bridge = fast_bridge(gw.url, sink, token=gw.token, observer_poll_s=0.02)
        async with running(bridge):
            await until(lambda: bool(sink.snapshots()))
            statuses[KEY] = "done"
            await until(lambda: bool(sink.of_kind(SessionStatusChanged)))
            mode = bridge.state.mode
            # No plugin: force-clear falls back to chat.abort, and refuses an idle session.
            result = await bridge.force_clear(KEY, "run-1", "stuck")

    assert (result.cleared, result.reason, result.fallback) == (False, "not_locked", "chat.abort")

    snapshot, change, *_ = sink.events
    assert isinstance(snapshot, Snapshot)
    assert snapshot.boot_id.startswith("observer:boot-scripted:")
    assert snapshot.session_statuses == {KEY: "running", "agent:main:slack:direct:dave": "done"}
    assert snapshot.entries == ()
    assert isinstance(change, SessionStatusChanged)
    assert (change.session_key, change.status, change.seq) == (KEY, "done", 1)
    assert change.boot_id == snapshot.boot_id
    assert mode == "observer"
