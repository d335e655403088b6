"""The servers the fault scenarios share: PostgreSQL (a migrated database copied per
scenario) and Redis (a fresh one per scenario), started once for the folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.scenarios import Servers


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    found = Servers(Path(tmp_path_factory.mktemp("faults")))
    try:
        found.start()
        yield found
    finally:
        found.stop()
