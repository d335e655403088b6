"""Cursors for the hot path's fixed statements: on PostgreSQL, prepared after a few uses.

Django's psycopg cursors bind parameters on the client, and a statement bound
on the client is never prepared: PostgreSQL parses and plans it every time.
Ingest's writes, the lease fence and the counters run the same few statements
for every batch, so on PostgreSQL they go through psycopg's own cursor, which
binds on the server: a statement it runs ``prepare_threshold`` times
(``runboard/settings.py``) is prepared and from then on only executed. On
SQLite, Django's cursor. Django's own queries are unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.db import connection
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper


@contextlib.contextmanager
def bound_cursor() -> Iterator[Any]:
    """A server-binding cursor on Django's connection (so in its transaction); PostgreSQL only.

    Its errors come out as Django's, as from any other cursor: a server that
    went away is an ``OperationalError`` (the bridge holds its batch and
    retries) and a duplicate an ``IntegrityError``, not a psycopg error
    nothing up the stack expects. COPY and multi-statement set-up need it too.
    """
    import psycopg
    from psycopg.types.numeric import Int8Dumper

    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as raw:
        # psycopg types each int by its size (int2, int4 …), and a prepared statement is
        # one query with one set of types: a count or a lag that grows past 32767 would
        # be a new statement. Every int as int8 keeps one statement per query.
        raw.adapters.register_dumper(int, Int8Dumper)
        # Django's wrapper, as on its own cursors: its execute wrappers and query log
        # (DEBUG, CaptureQueriesContext) see these statements too.
        wrapper = CursorDebugWrapper if connection.queries_logged else CursorWrapper
        yield wrapper(raw, connection)


def cursor() -> contextlib.AbstractContextManager[Any]:
    """PostgreSQL: ``bound_cursor()``, whose statements get prepared; SQLite: Django's cursor."""
    return bound_cursor() if connection.vendor == "postgresql" else connection.cursor()
