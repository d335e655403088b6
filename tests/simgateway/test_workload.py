"""Workloads: deterministic schedules, and the demo preset shows each build's failure."""

from __future__ import annotations

import argparse
import asyncio
import itertools

import pytest

from simgateway.cli import parse_gateway, serve
from simgateway.registry import ReplyRunRegistry
from simgateway.workload import Action, Repeat, Workload
from tests.simgateway.raw_client import RawClient
from tests.simgateway.registry_helpers import Rig, rig


class RegistryTarget:
    """Lets a workload drive a registry on a manual clock (no sockets, no waiting)."""

    running = True

    def __init__(self, registry: ReplyRunRegistry) -> None:
        self.registry = registry

    def send_inbound(self, session_key: str, text: str, *, turn_kind: str = "visible") -> str:
        return self.registry.dispatch(session_key, text, turn_kind=turn_kind)[0]

    def abort(self, session_key: str, run_id: str | None = None) -> list[str]:
        return self.registry.abort(session_key, run_id)


def play(r: Rig, workload: Workload, until_s: float) -> None:
    target = RegistryTarget(r.registry)
    start = r.clock.now
    for action in workload.schedule():
        if action.at_s > until_s:
            break
        r.advance(start + action.at_s - r.clock.now)
        action.apply(target)
    r.advance(start + until_s - r.clock.now)


def first(workload: Workload, n: int) -> list[Action]:
    return list(itertools.islice(workload.schedule(), n))


def test_the_same_seed_gives_the_same_schedule_and_another_seed_does_not() -> None:
    w = Workload(seed=3, rate=2.0, hang_rate=0.1, fail_rate=0.1, abort_rate=0.1)
    same = [(a.at_s, a.session_key, a.text, a.abort) for a in first(w, 50)]
    again = [
        (a.at_s, a.session_key, a.text, a.abort)
        for a in first(Workload(seed=3, rate=2.0, hang_rate=0.1, fail_rate=0.1, abort_rate=0.1), 50)
    ]
    other = [(a.at_s, a.session_key, a.text, a.abort) for a in first(Workload(seed=4), 50)]
    assert same == again
    assert same != other


def test_a_schedule_is_in_time_order_over_agent_channel_session_keys() -> None:
    actions = first(Workload(seed=1, rate=5.0, abort_rate=0.5, sessions=6), 200)
    assert [a.at_s for a in actions] == sorted(a.at_s for a in actions)
    keys = {a.session_key for a in actions}
    assert len(keys) == 6
    assert all(k.startswith("agent:") and ":direct:" in k for k in keys)
    assert any(a.abort for a in actions)


def test_the_demo_on_2026_5_28_leaves_waiters_forever_and_a_leaked_aborted_lock() -> None:
    r = rig("2026.5.28")
    play(r, Workload.demo("2026.5.28", seed=1, rate=0.0, sessions=0), until_s=60)
    entries = {e["sessionKey"]: e for e in r.registry.snapshot()["entries"]}
    hung = entries["agent:main:telegram:direct:demo-hung"]
    assert hung["result"] is None and len(hung["waiters"]) == 2
    assert all(w["timeoutMs"] is None for w in hung["waiters"])
    leaked = entries["agent:support:whatsapp:direct:demo-aborted"]
    assert leaked["result"] == {"kind": "aborted", "code": "aborted_by_user"}
    assert len(leaked["waiters"]) == 1


def test_the_demo_on_2026_5_28_has_its_heartbeats_skipped_while_the_hung_run_holds_the_lock() -> (
    None
):
    r = rig("2026.5.28")
    play(r, Workload.demo("2026.5.28", seed=1, rate=0.0, sessions=0), until_s=30)
    skips = [c for c in r.of_kind("skipped") if c["sessionKey"].endswith("demo-hung")]
    assert len(skips) >= 3
    assert {c["reason"] for c in skips} == {"active-run"}
    assert all(c["text"].startswith("heartbeat") for c in skips)


def test_the_demo_on_2026_9_skips_follow_ups_whose_wait_for_the_hung_lock_times_out() -> None:
    r = rig("2026.9")
    play(r, Workload.demo("2026.9", seed=1, rate=0.0, sessions=0), until_s=40)
    resolved = [c["outcome"] for c in r.of_kind("waiter.resolved")]
    skips = [c for c in r.of_kind("skipped") if c["sessionKey"].endswith("demo-hung")]
    assert resolved.count("timed_out") >= 2
    assert len(skips) >= 2 and {c["reason"] for c in skips} == {"active-run"}


def test_a_repeat_keeps_coming_for_as_long_as_the_workload_runs() -> None:
    key = "agent:main:main:direct:1"
    w = Workload(rate=0.0, repeats=(Repeat(2.0, 5.0, key, "beat", "heartbeat"),))
    actions = first(w, 4)
    assert [a.at_s for a in actions] == [2.0, 7.0, 12.0, 17.0]
    assert {(a.session_key, a.turn_kind) for a in actions} == {(key, "heartbeat")}


def test_the_demo_on_2026_5_3_alternates_drain_failures_on_one_session() -> None:
    r = rig("2026.5.3")
    play(r, Workload.demo("2026.5.3", seed=1, rate=0.0, sessions=0), until_s=60)
    assert len(r.of_kind("drain.failed")) == 5
    assert len(r.of_kind("acquired")) == 5


def test_the_demo_on_2026_9_heals_with_a_forced_settle_and_a_stale_takeover() -> None:
    r = rig("2026.9", terminal_settle_s=10.0, stale_takeover_s=30.0)
    play(r, Workload.demo("2026.9", seed=1, rate=0.0, sessions=0), until_s=60)
    hows = sorted(c["how"] for c in r.of_kind("released"))
    assert "forced_settle" in hows and "stale_takeover" in hows


def test_the_demo_adds_steady_traffic_that_completes() -> None:
    r = rig("2026.9")
    play(r, Workload.demo("2026.9", seed=2, rate=2.0, sessions=5), until_s=30)
    assert sum(1 for c in r.of_kind("released") if c["how"] == "normal") > 20


def test_a_gateway_spec_is_name_profile_port() -> None:
    spec = parse_gateway("sim-eu=2026.5.28:18789")
    assert (spec.name, spec.profile, spec.port) == ("sim-eu", "2026.5.28", 18789)
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=PROFILE:PORT"):
        parse_gateway("sim-eu:18789")
    with pytest.raises(argparse.ArgumentTypeError, match="unknown profile"):
        parse_gateway("x=1999.1:1")


async def test_the_cli_serves_gateways_with_a_workload_until_told_to_stop() -> None:
    stop = asyncio.Event()
    options = {
        "gateway": [parse_gateway("t-next=2026.9:0")], "token": "t", "workload": "steady",
        "seed": 1, "rate": 20.0, "sessions": 3, "knob": [("turn_median_s", 0.05)],
        "tick_interval_s": 15.0,
    }  # fmt: skip
    task = asyncio.create_task(serve(options, stop))
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.wait_for(task, 5.0)
    assert task.exception() is None


async def test_a_workload_drives_a_running_gateway(sim_gateway: object) -> None:
    gw = await sim_gateway(turn_median_s=0.05, turn_cap_s=0.1)  # type: ignore[operator]
    client, _ = await RawClient.open(gw.url)
    await client.payload("runboard.registry.subscribe")
    stop = asyncio.Event()
    task = asyncio.create_task(Workload(seed=1, rate=30.0, sessions=3).run(gw, stop))
    await client.registry_events_until(lambda p: p["kind"] == "released")
    stop.set()
    await asyncio.wait_for(task, 5.0)
    rows = (await client.payload("sessions.list"))["sessions"]
    assert rows and all(r["key"].startswith("agent:") for r in rows)
    await client.close()
