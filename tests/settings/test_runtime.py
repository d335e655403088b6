"""Process tuning: what is alive after the imports is left out of the cyclic GC."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

from runboard.runtime import freeze_imported_objects


def test_freezing_leaves_the_imported_objects_out_of_collections() -> None:
    frozen = freeze_imported_objects()
    assert frozen > 10_000
    # Other tests' threads may free a frozen object meanwhile; nothing is frozen behind us.
    assert 0 < gc.get_freeze_count() <= frozen
    # What was alive before is not in any generation a collection walks.
    assert gc.is_tracked(freeze_imported_objects)
    assert not any(o is freeze_imported_objects for o in gc.get_objects())


def test_the_asgi_application_freezes_on_import() -> None:
    # A fresh interpreter: in this one an earlier test may already have frozen.
    code = "import gc, runboard.asgi; print(gc.get_freeze_count())"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "runboard.settings"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
        cwd=Path(__file__).resolve().parents[2], timeout=60,
    )  # fmt: skip
    assert int(out.stdout.strip()) > 10_000
