"""Faults without loss, each injected into real processes on real servers (``scenarios``).

Every scenario ends with the same checks against the gateway's own
numbering: no event lost or stored twice, every action attempt with an
outcome, no lock the gateway does not hold; and the pages said what was
degraded while it lasted. How long each took to heal: ``bench/faults.py``.
"""

from __future__ import annotations

import pytest

from tests.faults import scenarios
from tests.faults.scenarios import Result, Servers

pytestmark = pytest.mark.slow


def assert_healed(result: Result) -> None:
    counts = result.counts
    assert counts.as_dict() == {"lost": 0, "duplicated": 0, "unaudited": 0, "phantom_locks": 0}, (
        counts.detail
    )
    assert sum(d["events"] for d in counts.detail.values()) > 50, counts.detail


def test_a_gateway_killed_mid_turn_and_restarted_leaves_no_lock_of_its_old_boot(
    servers: Servers,
) -> None:
    result = scenarios.gateway_restart(servers)
    assert_healed(result)
    assert "Gateway gw is disconnected" in result.banner


def test_a_bridge_killed_mid_batch_is_replaced_and_nothing_is_lost_or_stored_twice(
    servers: Servers,
) -> None:
    result = scenarios.bridge_sigkill(servers)
    assert_healed(result)
    assert "held by no bridge" in result.banner


def test_an_action_whose_worker_was_killed_is_marked_interrupted_and_its_retry_says_so(
    servers: Servers,
) -> None:
    result = scenarios.web_sigkill_mid_action(servers)
    assert_healed(result)
    assert result.notes["retry_status"] == 502


def test_a_bridge_outlives_sqlite_locked_for_30_seconds_and_loses_nothing(
    servers: Servers,
) -> None:
    result = scenarios.sqlite_locked(servers)
    assert_healed(result)
    assert "held by no bridge" in result.banner


def test_a_bridge_outlives_postgresql_stopped_and_started_and_loses_nothing(
    servers: Servers,
) -> None:
    result = scenarios.postgres_restart(servers, down_s=15.0)
    assert_healed(result)
    assert "store is unavailable" in result.banner


def test_after_redis_stops_and_starts_live_pushes_and_commands_work_again(
    servers: Servers,
) -> None:
    result = scenarios.redis_restart(servers)
    assert_healed(result)
    assert "Live updates unavailable: Redis unreachable" in result.banner
    assert result.notes["action_after"] in ("success", "noop", "conflict")
    assert result.notes["kept_viewer"] in ("closed", "receives")


def test_a_stalled_gateway_socket_is_noticed_and_the_bridge_resumes_without_loss(
    servers: Servers,
) -> None:
    result = scenarios.socket_stall(servers)
    assert_healed(result)
    assert result.notes["reconnects"] >= 1
    assert "Gateway gw is" in result.banner


def test_a_full_var_disk_holds_the_bridge_back_and_once_freed_nothing_is_lost(
    servers: Servers,
) -> None:
    # This container lets root mount a tmpfs; where it cannot, the scenario says so and fails.
    result = scenarios.disk_full(servers)
    assert_healed(result)
    # Read from the disk itself: the bridge cannot record its failing writes in a full store.
    assert "The store's disk is full" in result.banner
    assert "its writes fail" in result.banner
