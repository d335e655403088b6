"""The degraded banner's notices, each from the state it is read from."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from adminpanel import degraded
from adminpanel.models import Gateway
from tests.observability.support import bridge, held, lease
from tests.support.users import make_user

pytestmark = pytest.mark.django_db


def gateway(name: str = "gw", **fields: Any) -> Gateway:
    defaults = {"url": "ws://127.0.0.1:1", "status": "connected"}
    return Gateway.objects.create(name=name, **{**defaults, **fields})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def fresh_redis_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(degraded, "_redis_seen", (0.0, ""))


def test_nothing_is_said_when_every_gateway_is_held_and_connected() -> None:
    held(gateway())
    assert degraded.notices() == []


def test_a_gateway_whose_lease_expired_while_bridges_run_is_held_by_no_bridge() -> None:
    gw = gateway()
    bridge("bridge-1")
    lease(gw, "bridge-1", expires_in_s=-1)
    assert degraded.notices() == ["Gateway gw is held by no bridge: its updates are paused."]


def test_a_gateway_whose_holder_stopped_beating_is_held_by_no_bridge_before_its_lease_ends(
    settings: Any,
) -> None:
    settings.RUNBOARD_BRIDGE_LEASE_S = 6.0
    gw = gateway()
    bridge("bridge-1", beat_age_s=5.0)  # two beats (every 2 s) missed
    bridge("bridge-2")
    lease(gw, "bridge-1", expires_in_s=1.5)
    assert degraded.notices() == [
        "Gateway gw is held by no bridge: its updates are paused (the bridge holding it, "
        "pid 1 on host, last answered 5 s ago)."
    ]


def test_a_holder_one_beat_late_still_holds_its_gateway(settings: Any) -> None:
    settings.RUNBOARD_BRIDGE_LEASE_S = 6.0
    gw = gateway()
    bridge("bridge-1", beat_age_s=3.0)
    lease(gw, "bridge-1", expires_in_s=3.0)
    assert degraded.notices() == []


def test_a_disconnected_gateway_is_named_with_its_last_error() -> None:
    gateway(status="disconnected", last_error="cannot connect: refused")
    assert degraded.notices() == ["Gateway gw is disconnected: cannot connect: refused"]


def test_an_unreachable_redis_is_said_with_its_error(settings: Any) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    found = degraded.notices()
    assert len(found) == 1 and found[0].startswith("Live updates unavailable: Redis unreachable")
    problem = degraded.redis_problem()
    assert problem and found[0].endswith(f"({problem}).")


def test_a_store_disk_with_less_than_a_megabyte_free_is_said_to_be_full() -> None:
    notice = degraded.disk_notice(Path("/srv/runboard/var"), 8192)
    assert notice.startswith("The store's disk is full (8 KiB free in /srv/runboard/var)")
    assert degraded.disk_notice(Path("/srv/runboard/var"), 64 << 20) == ""


def test_the_sqlite_database_folder_is_the_disk_asked() -> None:
    folder = degraded.sqlite_folder()
    if connection.vendor == "sqlite":
        assert folder is not None and folder.is_dir()
    else:
        assert folder is None


def test_the_sessions_page_shows_the_banner(client: Client) -> None:
    client.force_login(make_user("viewer"))
    gateway(status="disconnected", last_error="no frame for 2.2 s")
    html = client.get("/").content.decode()
    assert '<div class="degraded"' in html and "Gateway gw is disconnected" in html
