"""/healthz and /readyz: JSON, no login, 200 when ready and 503 naming each reason when not."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import AsyncClient, Client

from adminpanel.models import Gateway
from adminpanel.observability import health
from tests.observability.support import bridge, gateway, held, lease

pytestmark = pytest.mark.django_db(transaction=True)


def checks(answer: Any) -> dict[str, dict[str, Any]]:
    return {c["check"]: c for c in answer.json()["checks"]}


def held_gateways(*names: str, unheld: str = "", disabled: str = "") -> None:
    for name in names:
        held(gateway(name))
    if unheld:
        gateway(unheld)
    if disabled:
        gateway(disabled, enabled=False)


async def readyz() -> Any:
    return await AsyncClient().get("/readyz")


def test_healthz_answers_ok_without_login() -> None:
    response = Client().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_ready_when_every_enabled_gateway_is_held_by_a_live_bridge() -> None:
    await sync(lambda: held_gateways("alpha", "beta"))

    response = await readyz()

    assert response.status_code == 200
    assert response.json()["status"] == "ready"
    assert set(checks(response)) == {"database", "channel_layer", "gateway:alpha", "gateway:beta"}
    assert all(c["ok"] and c["why"] == "" for c in checks(response).values())


async def test_readyz_ignores_a_disabled_gateway() -> None:
    await sync(lambda: held_gateways("alpha", disabled="off"))

    response = await readyz()

    assert response.status_code == 200
    assert "gateway:off" not in checks(response)


async def test_readyz_is_not_ready_when_a_gateway_is_held_by_no_bridge() -> None:
    await sync(lambda: held_gateways("alpha", unheld="orphan"))

    response = await readyz()

    assert response.status_code == 503
    assert response.json()["status"] == "not ready"
    assert checks(response)["gateway:orphan"] == {
        "check": "gateway:orphan",
        "ok": False,
        "why": "held by no bridge",
    }
    assert checks(response)["gateway:alpha"]["ok"]


async def test_readyz_is_not_ready_when_a_gateway_lease_expired() -> None:
    def state() -> None:
        bridge("b1")
        lease(gateway("alpha"), "b1", expires_in_s=-30)

    await sync(state)

    response = await readyz()

    assert response.status_code == 503
    assert checks(response)["gateway:alpha"]["why"].startswith("its lease expired 30 s ago")


async def test_readyz_is_not_ready_when_the_holder_heartbeat_is_stale() -> None:
    def state() -> None:
        bridge("b1", beat_age_s=40)
        lease(gateway("alpha"), "b1")

    await sync(state)

    response = await readyz()

    assert response.status_code == 503
    assert checks(response)["gateway:alpha"]["why"] == (
        "its bridge's heartbeat is 40 s old (lease period 15 s)"
    )


async def test_readyz_is_not_ready_when_the_holder_has_no_heartbeat_row() -> None:
    await sync(lambda: lease(gateway("alpha"), "vanished"))

    response = await readyz()

    assert response.status_code == 503
    assert checks(response)["gateway:alpha"]["why"] == "its holder has no heartbeat"


async def test_readyz_is_not_ready_when_the_channel_layer_is_unreachable(
    settings: Any, tmp_path: Any
) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "adminpanel.live.hub.HubChannelLayer",
            "CONFIG": {"path": str(tmp_path / "no-hub.sock")},
        }
    }

    response = await readyz()

    assert response.status_code == 503
    layer = checks(response)["channel_layer"]
    assert not layer["ok"]
    assert layer["why"].startswith(("unreachable (", "no answer within"))
    assert "no-hub.sock" not in response.content.decode()  # no paths or addresses
    assert checks(response)["database"]["ok"]


@contextmanager
def unreachable_database() -> Iterator[str]:
    """Point the default database at nothing; yield the why readyz should give."""
    db = connections["default"]
    saved = dict(db.settings_dict)
    db.close()
    if db.vendor == "postgresql":
        db.close_pool()  # the pool keeps its connect arguments: a new one reads the new port
        db.settings_dict.update(HOST="127.0.0.1", PORT=str(closed_port()))
        # psycopg's pool retries a refused connect until RUNBOARD_DB_POOL_TIMEOUT_S:
        # the probe gives up first.
        why = f"no answer within {health.CHECK_TIMEOUT_S:g} s"
    else:
        db.settings_dict["NAME"] = "/nonexistent-dir/runboard-readyz.sqlite3"
        why = "unreachable (OperationalError)"
    try:
        yield why
    finally:
        db.close()
        if db.vendor == "postgresql":
            db.close_pool()
        db.settings_dict.clear()
        db.settings_dict.update(saved)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_readyz_is_not_ready_when_the_database_is_unreachable() -> None:
    with unreachable_database() as why:
        response = Client().get("/readyz")

    assert response.status_code == 503
    found = checks(response)
    assert found["database"] == {"check": "database", "ok": False, "why": why}
    assert "nonexistent-dir" not in response.content.decode()
    assert "127.0.0.1" not in response.content.decode()
    assert not any(name.startswith("gateway:") for name in found)


async def test_readyz_with_no_gateways_configured_is_ready() -> None:
    assert not await sync(lambda: Gateway.objects.exists())

    response = await readyz()

    assert response.status_code == 200


async def sync(fn: Any) -> Any:
    return await sync_to_async(fn)()
