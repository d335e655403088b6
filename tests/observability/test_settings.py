"""RUNBOARD_METRICS_TOKEN: a short one stops the process at start, without printing it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_metrics_token_shorter_than_16_characters_stops_manage_py(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "RUNBOARD_METRICS_TOKEN": "short-secret",
        "RUNBOARD_VAR_DIR": str(tmp_path),
        "RUNBOARD_SECRET_KEY": "a-test-secret-key-that-is-long-enough-for-django-0123456789",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "RUNBOARD_METRICS_TOKEN: expected at least 16 characters" in result.stderr
    assert "short-secret" not in result.stderr
