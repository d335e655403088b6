from __future__ import annotations

from typing import Any

import pytest

from tests.observability.support import METRICS_TOKEN


@pytest.fixture(autouse=True)
def _metrics_token(settings: Any) -> None:
    settings.RUNBOARD_METRICS_TOKEN = METRICS_TOKEN
    settings.RUNBOARD_BRIDGE_LEASE_S = 15.0
