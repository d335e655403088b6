"""The gateways page says what a hostile gateway cost and what a missing scope disables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.test import Client

from adminpanel.ingest import Ingestor
from adminpanel.models import Gateway
from gateway_bridge.registry_decode import decode_or_reject
from tests.support.users import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer() -> Client:
    make_user("viewer", "pw-viewer-1")
    client = Client()
    client.login(username="viewer", password="pw-viewer-1")
    return client


def test_rejected_frames_are_counted_with_the_last_reason(viewer: Client) -> None:
    now = datetime.now(UTC).timestamp()
    payload = {
        "kind": "phase",
        "bootId": "b",
        "seq": 1,
        "ts": now * 1000,
        "sessionKey": "agent:main:main",
        "runId": "r" * 300,
        "phase": "running",
    }
    Ingestor(clock=lambda: now).apply([decode_or_reject("gw", payload, now)])

    page = viewer.get("/gateways/").content.decode()

    assert Gateway.objects.get(name="gw").rejected_frames == 1
    assert "field &#x27;run_id&#x27; is longer than 128 characters" in page


def test_a_gateway_without_admin_scope_says_force_clear_is_disabled(viewer: Client) -> None:
    Gateway.objects.create(
        name="gw", access="act", mode="plugin", granted_scopes=["operator.read", "operator.write"]
    )

    page = viewer.get("/gateways/").content.decode()

    assert "granted: operator.read, operator.write" in page
    assert (
        "Disabled: force-clear needs operator.admin; clear-and-requeue needs operator.admin" in page
    )


def test_a_gateway_with_every_scope_it_asked_for_disables_nothing(viewer: Client) -> None:
    Gateway.objects.create(name="gw", access="admin", mode="plugin", granted_scopes=None)

    assert "Disabled:" not in viewer.get("/gateways/").content.decode()
