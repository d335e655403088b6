"""What every benchmark shares: a scratch Django set-up and percentiles."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def setup_django(workdir: Path) -> None:
    """Point Django at a scratch SQLite file under ``workdir`` (WAL), set it up and migrate."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "runboard.settings"
    os.environ["RUNBOARD_DATABASE_URL"] = ""
    os.environ["RUNBOARD_VAR_DIR"] = str(workdir)
    os.environ.setdefault("RUNBOARD_LOG_LEVEL", "WARNING")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0-100) of ``values``."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]
