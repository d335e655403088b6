"""SQLite's WAL checkpoints on a thread of their own, so no commit waits for one.

In WAL mode SQLite copies the log back into the database file (a checkpoint)
from inside whichever commit pushes the log past 1,000 pages, and the copy
ends with an fsync. Under the live load that commit is ingest's, and every
change that arrived meanwhile waited behind the fsync (measurements in
docs/notes/bridge.md).

While a ``Checkpointer`` runs, the SQLite connections this process opens turn
automatic checkpoints off (``PRAGMA wal_autocheckpoint=0``), and the
checkpointer runs a PASSIVE checkpoint every ``interval_s`` on its own thread
and connection. A passive checkpoint never blocks a reader or a writer: it
copies what no reader still needs, and the fsync waits on its thread, not on
ingest's. Other processes (a management command, a second web server) keep
SQLite's default and checkpoint as before.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

import structlog
from django.db import connections
from django.db.backends.signals import connection_created

log = structlog.get_logger(__name__)

# SQLite's own threshold (pages), restored when the checkpointer stops.
AUTOCHECKPOINT_DEFAULT = 1000
# A log this long after a checkpoint means readers held it back (a passive
# checkpoint copies only what nobody still reads): worth a warning.
WAL_PAGES_WARNING = 10_000

_running = 0
_running_lock = threading.Lock()


def _no_autocheckpoint(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.vendor == "sqlite" and _running:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_autocheckpoint=0")


connection_created.connect(_no_autocheckpoint)


def set_autocheckpoint(pages: int, alias: str = "default") -> None:
    """Set this thread's open connection's threshold (connections opened later follow
    the signal above)."""
    connection = connections[alias]
    if connection.vendor == "sqlite" and connection.connection is not None:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA wal_autocheckpoint={int(pages)}")


class Checkpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` every ``interval_s`` on a thread.

    Does nothing for a database that is not a SQLite file.
    """

    def __init__(self, *, interval_s: float = 1.0, alias: str = "default") -> None:
        self.interval_s = interval_s
        self.alias = alias
        self.checkpoints = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._path: str | None = None

    @property
    def applies(self) -> bool:
        settings = connections[self.alias].settings_dict
        name = str(settings["NAME"])
        return connections[self.alias].vendor == "sqlite" and not (
            name == ":memory:" or (name.startswith("file:") and "mode=memory" in name)
        )

    def start(self) -> None:
        global _running
        if not self.applies or self._thread is not None:
            return
        self._path = str(connections[self.alias].settings_dict["NAME"])
        with _running_lock:
            _running += 1
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread after one last checkpoint; new connections checkpoint as usual."""
        global _running
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join()
        with _running_lock:
            _running -= 1

    def _run(self) -> None:
        assert self._path is not None
        db = sqlite3.connect(self._path, timeout=20, isolation_level=None)
        try:
            while not self._stop.wait(self.interval_s):
                self.checkpoint(db)
            self.checkpoint(db)
        finally:
            db.close()

    def checkpoint(self, db: sqlite3.Connection) -> None:
        try:
            busy, pages, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:  # the next round tries again
            log.warning("wal_checkpoint_failed", error=str(exc))
            return
        self.checkpoints += 1
        if pages - copied > WAL_PAGES_WARNING:
            log.warning("wal_checkpoint_behind", wal_pages=pages, copied=copied, busy=busy)
