"""Registers the ``openclaw`` marker for this folder (tests/contract/conftest.py does too)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "openclaw: runs against a real OpenClaw gateway or its Node (-m openclaw)"
    )
