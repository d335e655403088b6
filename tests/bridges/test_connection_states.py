"""The bridges' connection states reach the gateway rows: changes that matter before the
batch that follows them, a batch's own ``last_event_at`` at the next tick."""

from __future__ import annotations

from typing import Any

import pytest

from adminpanel.bridges.supervisor import BridgeSupervisor
from adminpanel.ingest import Ingestor, IngestResult
from adminpanel.models import Gateway
from gateway_bridge.connection import ConnectionState

pytestmark = pytest.mark.django_db

T0 = 1_800_000_000.0


class CountingIngestor(Ingestor):
    """Ingest that applies nothing and counts the connection states it records."""

    def __init__(self) -> None:
        super().__init__()
        self.recorded: list[ConnectionState] = []

    def record_connection(self, gateway: str, state: Any) -> None:
        self.recorded.append(state)
        super().record_connection(gateway, state)

    def apply(self, events: Any) -> IngestResult:
        return IngestResult()


def test_a_batch_records_a_changed_status_first_and_leaves_its_event_time_to_the_tick() -> None:
    ingestor = CountingIngestor()
    supervisor = BridgeSupervisor([], ingestor=ingestor)
    connected = ConnectionState("gw", status="connected", mode="plugin", last_event_at=T0)

    supervisor._states["gw"] = connected
    supervisor._apply([])  # a new status: recorded before the batch
    assert ingestor.recorded == [connected]

    later = ConnectionState("gw", status="connected", mode="plugin", last_event_at=T0 + 5)
    supervisor._states["gw"] = later
    supervisor._apply([])  # only the event time moved: not written per batch
    assert ingestor.recorded == [connected]
    assert Gateway.objects.get(name="gw").last_event_at.timestamp() == T0

    supervisor._flush_states()  # the tick writes every change
    assert ingestor.recorded == [connected, later]
    assert Gateway.objects.get(name="gw").last_event_at.timestamp() == T0 + 5

    gone = ConnectionState("gw", status="disconnected", mode="plugin", last_event_at=T0 + 5)
    supervisor._states["gw"] = gone
    supervisor._apply([])
    assert ingestor.recorded[-1] == gone
    assert Gateway.objects.get(name="gw").status == "disconnected"


def test_recording_a_state_creates_the_gateway_row_when_it_is_missing() -> None:
    Ingestor().record_connection("new", ConnectionState("new", status="connected"))
    assert Gateway.objects.get(name="new").status == "connected"
