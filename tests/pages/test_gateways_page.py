"""The gateways page: connection, mode and what observer mode cannot see, lag, reconnects."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.html import escape

from adminpanel.bridges import leases
from adminpanel.bridges.leases import Holder
from adminpanel.detect import Thresholds
from adminpanel.ingest import Ingestor
from adminpanel.models import Gateway
from gateway_bridge.connection import ConnectionState
from gateway_bridge.observer import OBSERVER_BLIND_SPOTS


def connected(name: str, **fields: object) -> None:
    Ingestor(thresholds=Thresholds()).record_connection(
        name,
        ConnectionState(gateway=name, status="connected", **fields),  # type: ignore[arg-type]
    )


def test_a_gateway_shows_its_connection_lag_reconnects_and_last_error(viewer: Client) -> None:
    last_event = time.time() - 7
    connected("gw-a", mode="plugin", last_event_at=last_event, reconnects=3, last_error="boom")
    html = viewer.get("/gateways/").content.decode()
    stamp = datetime.fromtimestamp(last_event, UTC).isoformat()
    assert '<span class="state connected">connected</span>' in html
    assert f'<time datetime="{stamp}">' in html  # the lag, ticking in the browser
    assert '<td class="num">3</td>' in html
    assert "boom" in html


def test_observer_mode_says_what_it_cannot_see(viewer: Client) -> None:
    connected("gw-o", mode="observer")
    html = viewer.get("/gateways/").content.decode()
    assert 'aria-describedby="observer-' in html
    for blind_spot in OBSERVER_BLIND_SPOTS:
        assert escape(blind_spot) in html


def test_an_unknown_parameter_is_a_400(viewer: Client) -> None:
    response = viewer.get("/gateways/", {"x": "1"})
    assert response.status_code == 400
    assert "Unknown parameter &#x27;x&#x27;; this page takes: none." in response.content.decode()


def test_the_gateways_query_count_does_not_grow_with_gateways(viewer: Client) -> None:
    connected("gw-0")
    with CaptureQueriesContext(connection) as few:
        viewer.get("/gateways/")
    for n in range(1, 8):
        connected(f"gw-{n}", mode="observer")
    with CaptureQueriesContext(connection) as many:
        viewer.get("/gateways/")
    assert len(many) == len(few)


def test_a_gateway_shows_the_bridge_that_holds_it_or_that_none_does(viewer: Client) -> None:
    connected("gw-held", mode="plugin")
    connected("gw-orphan", mode="plugin")
    Gateway.objects.filter(name__in=["gw-held", "gw-orphan"]).update(url="ws://127.0.0.1:1")
    held = Gateway.objects.get(name="gw-held")
    leases.acquire(Holder("box-1:4242:ab", "box-1", 4242), held.pk, timezone.now(), timedelta(60))
    html = viewer.get("/gateways/").content.decode()
    assert "box-1 pid 4242" in html
    assert html.count("held by no bridge") == 1
