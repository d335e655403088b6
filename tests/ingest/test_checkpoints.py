"""SQLite's WAL checkpoints run on the checkpointer's thread, not inside commits."""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from adminpanel.bridges.checkpoints import AUTOCHECKPOINT_DEFAULT, Checkpointer, set_autocheckpoint
from adminpanel.models import Gateway
from tests.actions.support import eventually, mirrored
from tests.support.fixtures_sim import SimGatewayFactory

# SQLite's WAL checkpoints: nothing to check on PostgreSQL.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded_only]

WAIT_S = 10.0  # an upper bound only


def fresh_threshold() -> int:
    """``wal_autocheckpoint`` of a connection Django opens now."""
    connection.close()
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_autocheckpoint")
        (pages,) = cursor.fetchone()
    return int(pages)


def database_file() -> Path:
    return Path(connection.settings_dict["NAME"])


@pytest.fixture
def scratch() -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE checkpoint_scratch (data BLOB)")
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE checkpoint_scratch")


def frames_not_copied() -> int:
    """Log frames not yet copied into the database file, read without copying any.

    From the wal-index (the ``-shm`` file, native byte order): ``mxFrame`` at byte
    16 of the header is the last valid frame, ``nBackfill`` at byte 96 (the
    checkpoint info after the header's two copies) the frames already copied.
    """
    shm = Path(f"{database_file()}-shm").read_bytes()
    (last,) = struct.unpack_from("=I", shm, 16)
    (copied,) = struct.unpack_from("=I", shm, 96)
    return int(last - copied)


def write_pages(pages: int) -> None:
    """Commit about ``pages`` pages of 4 KiB (SQLite's default page size)."""
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO checkpoint_scratch (data) VALUES (%s)", [(os.urandom(4000),)] * pages
        )


def test_while_it_runs_new_connections_leave_checkpoints_to_it() -> None:
    assert connection.vendor == "sqlite"
    checkpointer = Checkpointer(interval_s=0.05)
    assert checkpointer.applies
    checkpointer.start()
    try:
        assert fresh_threshold() == 0
    finally:
        checkpointer.stop()
    assert fresh_threshold() == AUTOCHECKPOINT_DEFAULT


def test_the_open_connection_can_be_switched_too() -> None:
    with connection.cursor():
        pass
    set_autocheckpoint(0)
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_autocheckpoint")
        assert cursor.fetchone() == (0,)
    set_autocheckpoint(AUTOCHECKPOINT_DEFAULT)


def test_commits_leave_the_log_to_the_checkpointer_thread(scratch: None) -> None:
    checkpointer = Checkpointer(interval_s=3600)  # only the last round, at stop()
    checkpointer.start()
    try:
        connection.close()  # reopened with automatic checkpoints off
        write_pages(1500)  # over the 1,000 pages at which a commit copies the log back
        assert frames_not_copied() >= 1500
    finally:
        checkpointer.stop()
    assert frames_not_copied() == 0
    assert checkpointer.checkpoints == 1


def test_it_checkpoints_every_interval(scratch: None) -> None:
    checkpointer = Checkpointer(interval_s=0.05)
    checkpointer.start()
    try:
        connection.close()
        write_pages(200)
        deadline = time.monotonic() + WAIT_S
        while frames_not_copied() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert frames_not_copied() == 0
        assert checkpointer.checkpoints >= 1
    finally:
        checkpointer.stop()


def test_without_a_checkpointer_commits_checkpoint_as_sqlite_does(scratch: None) -> None:
    connection.close()
    assert fresh_threshold() == AUTOCHECKPOINT_DEFAULT
    write_pages(1500)
    # The commit itself copied the log back.
    assert frames_not_copied() < 1500


def test_a_memory_database_has_nothing_to_checkpoint() -> None:
    checkpointer = Checkpointer()
    name = connection.settings_dict["NAME"]
    connection.settings_dict["NAME"] = ":memory:"
    try:
        assert not checkpointer.applies
        checkpointer.start()  # does nothing
        assert checkpointer.checkpoints == 0
    finally:
        connection.settings_dict["NAME"] = name
        checkpointer.stop()


async def test_the_bridge_supervisor_runs_one_while_it_mirrors(
    sim_gateway: SimGatewayFactory,
) -> None:
    @sync_to_async(thread_sensitive=True)
    def ingest_threshold() -> int:  # on the thread ingest writes from, as ingest does
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_autocheckpoint")
            (pages,) = cursor.fetchone()
        return int(pages)

    gateway_mirrored = sync_to_async(Gateway.objects.filter(name="sim").exists)
    gw = await sim_gateway(profile="2026.9")
    async with mirrored(gw) as supervisor:

        async def checkpointed() -> bool:
            return supervisor.checkpointer.checkpoints > 0

        await eventually(gateway_mirrored)
        assert await ingest_threshold() == 0
        await eventually(checkpointed)
    assert await ingest_threshold() == AUTOCHECKPOINT_DEFAULT
