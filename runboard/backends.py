"""At start, check that the database and Redis the settings name answer; say which setting if not.

A web worker or a bridge started against a wrong host, port or password
should stop at once with one line naming ``RUNBOARD_DATABASE_URL`` or
``RUNBOARD_REDIS_URL`` (passwords masked), not serve errors to the first
visitor or retry silently for ever. Once running, losing either is retried
with backoff where it happens (ingest, the channel layers).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.db import connection

from runboard.env import SettingError

CONNECT_TIMEOUT_S = 5.0


def masked(url: str) -> str:
    """``url`` without its password, fit for a log line or an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def check_database() -> None:
    where = masked(settings.DATABASE_URL) if settings.DATABASE_URL else "the default SQLite file"
    try:
        _connect_once()
    except Exception as exc:  # the driver's own error type; the message says what went wrong
        lines = str(exc).strip().splitlines()
        reason = " ".join(line.strip() for line in lines[:2]) or type(exc).__name__
        raise SettingError(f"RUNBOARD_DATABASE_URL: cannot connect to {where}: {reason}") from None


def _connect_once() -> None:
    if connection.vendor != "postgresql":
        connection.ensure_connection()
        connection.close()
        return
    # Straight to the server, not through the pool: the server's error says why.
    import psycopg

    params = dict(connection.get_connection_params())
    params["connect_timeout"] = int(CONNECT_TIMEOUT_S)
    psycopg.connect(**params).close()


def check_redis() -> None:
    if not settings.REDIS_URL:
        return
    import redis

    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=CONNECT_TIMEOUT_S,
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        raise SettingError(
            f"RUNBOARD_REDIS_URL: cannot reach {masked(settings.REDIS_URL)}: {exc}"
        ) from None
    finally:
        client.close()


def check_backends() -> None:
    """Raise ``SettingError`` naming the setting whose server does not answer."""
    check_database()
    check_redis()
