from __future__ import annotations

from typing import Any

import pytest

pytest_plugins = ["tests.fixtures_sim"]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    """Django's real hasher takes about a second per password: too slow for every test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
