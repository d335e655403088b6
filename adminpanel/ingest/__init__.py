"""Ingest: the one writer of mirrored registry state.

The bridge hands batches of normalized events (``gateway_bridge.events``) to
``Ingestor.apply``. Each call is one transaction that

1. *sequences* the events per gateway against the stored cursor
   ``(boot_id, last_seq)``: duplicates are dropped, events that arrive ahead of
   a missing one are held in memory until the gap fills, a new ``boot_id``
   means the gateway restarted, a ``Snapshot`` jumps the cursor;
2. loads the sessions, runs and open waiters those events touch, once;
3. applies the events, in order, to plain in-memory objects;
4. writes the result back with a handful of ``executemany`` statements;
5. re-runs the flag rules (``adminpanel.detect``) on the touched sessions.

Rules worth knowing when reading the store:

- A snapshot at or below the cursor of the same boot is stale and ignored; a
  newer one releases (``release_how="reconciled"``) every lock it does not list
  and clears their waiters.
- A new boot closes every run the old one held (``release_how="restart"``) and
  clears its waiters; late events from a past boot are ignored.
- Rows ingest inferred itself (``run_lost_at_restart``, ``lock_reconciled``)
  sit on the timeline with ``seq`` NULL: the gateway never numbered them.
- A flag that is still true keeps its row and its ``since``; its severity, why
  and details are refreshed when severity or details change.

Why not the ORM per event: one query per event would make the store the
bottleneck and hold SQLite's write lock for the whole batch; loading once and
writing once keeps a batch of thousands of events to about a dozen statements
(figures in docs/notes/ingest.md). The SQL is plain ``INSERT``/``UPDATE`` with
``%s`` parameters, so it runs unchanged on SQLite and PostgreSQL.

The modules: ``ingestor`` (``Ingestor``, re-exported here), ``sequencer``
(ordering), ``batch`` (load once, write once), ``applier`` (one method per
event kind), ``flags`` (the rules' findings as Flag rows), ``rows`` (the
in-memory rows, the session's built from ``Session._meta``), ``sql`` (plain
statements and value adapters).
"""

from __future__ import annotations

from adminpanel.ingest.ingestor import Ingestor, IngestResult, LeaseLost

__all__ = ["IngestResult", "Ingestor", "LeaseLost"]
