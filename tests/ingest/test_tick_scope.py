"""The detect tick of a bridge re-runs the rules on its own gateways only (another bridge
ticks the rest), so two bridges never write flags for the same sessions."""

from __future__ import annotations

import pytest

from adminpanel.detect import Thresholds
from adminpanel.ingest import Ingestor
from adminpanel.models import Flag
from tests.support.streams import NOW, Stream, locked_sessions

pytestmark = pytest.mark.django_db


def test_a_tick_for_some_gateways_flags_only_their_sessions() -> None:
    ingestor = Ingestor(thresholds=Thresholds(stuck_after_s=30))
    for name in ("gw-a", "gw-b"):
        ingestor.apply(list(locked_sessions(Stream(name), 2)))
    ingestor.tick(now=NOW + 3600, gateways={"gw-a"})
    flagged = set(Flag.objects.filter(code="no_progress").values_list("session__gateway__name",
                                                                        flat=True))  # fmt: skip
    assert flagged == {"gw-a"}
    ingestor.tick(now=NOW + 3600)
    flagged = set(Flag.objects.filter(code="no_progress").values_list("session__gateway__name",
                                                                        flat=True))  # fmt: skip
    assert flagged == {"gw-a", "gw-b"}


def test_a_tick_for_no_known_gateway_does_nothing() -> None:
    ingestor = Ingestor(thresholds=Thresholds(stuck_after_s=30))
    ingestor.apply(list(locked_sessions(Stream("gw-a"), 1)))
    assert ingestor.tick(now=NOW + 3600, gateways={"elsewhere"}) == set()
    assert not Flag.objects.exists()
