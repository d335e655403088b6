from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest_plugins = ["tests.support.fixtures_sim"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that drive Chromium are marked ``browser``: `make test-fast` leaves them out."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    """Django's real hasher takes about a second per password: too slow for every test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """pytest-django's test database, and on PostgreSQL no session left on it at the end.

    An async test's ``sync_to_async`` thread keeps its own connection, which
    Django's teardown cannot close from the main thread; PostgreSQL then refuses
    to drop the test database while that session is open.
    """
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture
def quick_supervisor(settings: Any) -> Any:
    """Settings for a ``BridgeSupervisor`` run inside a test: short ticks, timeouts, backoff."""
    settings.RUNBOARD_DETECT_TICK_S = 0.05
    settings.RUNBOARD_RECOVERY_TICK_S = 0.05
    settings.RUNBOARD_BACKOFF_MAX_S = 0.3
    settings.RUNBOARD_CALL_TIMEOUT_S = 2.0
    settings.RUNBOARD_CONNECT_TIMEOUT_S = 2.0
    return settings


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A ``postgres_only`` test run on another database fails, saying where it runs."""
    if item.get_closest_marker("postgres_only") is None:
        return
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.fail(
            f"{item.name} is about PostgreSQL and the database is {connection.vendor}: "
            "`make test-backends` runs it (`make test` deselects it on SQLite)"
        )
