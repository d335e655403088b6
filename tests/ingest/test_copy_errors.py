"""On PostgreSQL ingest writes through psycopg's own cursors (COPY, server-side binding);
their errors must come out as Django's, or nothing up the stack knows them."""

from __future__ import annotations

import pytest
from django.db import OperationalError, connection, connections

from adminpanel.ingest.sql import Tables

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


def test_a_database_gone_under_a_copying_cursor_is_djangos_operational_error() -> None:
    tables = Tables()
    assert tables.gateway_read.copies
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:  # as a server restart ends every session
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()
    try:
        # The bridge holds a batch on OperationalError and writes it once the store is back.
        with pytest.raises(OperationalError):
            tables.gateway_read.select("name = %s", ["gw"])
    finally:
        connection.close()
