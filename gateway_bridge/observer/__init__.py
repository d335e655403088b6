"""Observer mode: the registry inferred from what a stock OpenClaw gateway shows.

Without the companion plugin no method exposes the reply-run registry. What
the gateway does show (openclaw-internals.md §2, §3b, §5):

- ``sessions.list`` rows (and ``sessions.changed`` events): the session
  store's ``status``, ``hasActiveRun`` and, on builds that can prove it, the
  exact set ``activeRunIds`` (chat runs executing *or waiting*), ``startedAt``;
- ``agent`` events (``run_status`` phases, lifecycle start/end/error,
  assistant/tool deltas) and ``chat`` events (status/delta/final/aborted/error)
  for every run that executes. A message that waits for a held lock gets no
  event at all until it is admitted or dropped;
- ``logs.tail`` lines with the known signatures (dispatch skips, follow-up
  drain failures, forced settle, stale takeover, stuck-session diagnostics).

``ObserverTranslator`` turns those into the same normalized events
(``gateway_bridge.events``) plugin mode produces, as far as they allow. It
is pure: frames and payloads in, events out, times passed in
(``translator``, over the registry it infers in ``inferred``). The socket
loop that feeds it, polls and carries the commands' fallbacks is ``mode``.

Inference rules, in short:

- the first sign of a run (an event of its own, or a new id in
  ``activeRunIds`` while the session shows no lock) is ``LockAcquired``;
  ``run_status`` phases before the model starts map to ``queued``, the rest
  to ``running``; deltas and tool calls are ``RunActivity`` (throttled);
- lifecycle end/error and chat final/aborted/error are ``RunEnded``; the lock
  is released (``LockReleased``) only when the session shows no active run
  (``activeRunIds`` without it, ``hasActiveRun`` false) or another run starts;
- another id in ``activeRunIds`` while the lock is held is a ``WaiterAdded``
  (its waiter id is the run id); it is admitted when its own events start,
  dropped when it ends without having run (a ``DispatchSkipped``, whose reason
  is settled shortly after, once the abort that usually causes it is known);
- log signatures become ``DispatchSkipped`` / ``FollowupDrainFailed`` /
  ``LockReleased(forced_settle | stale_takeover)``; a skip seen both as a
  dropped run and as a log line is reported once.

The gateway numbers none of this, so the translator numbers its events
itself under a boot id of the bridge's choosing (see ``ObserverMode``).

``OBSERVER_BLIND_SPOTS`` below is what this mode cannot see; the pages and the
API show it to the operator.
"""

from __future__ import annotations

OBSERVER_BLIND_SPOTS: tuple[str, ...] = (
    "Registry phases are inferred from run events: a run is queued until it starts and running "
    "after; compaction and memory-flush phases are not told apart.",
    "A lock whose run has ended but which the registry still holds (the leak) looks released: "
    "sessions.list reports such a session as idle.",
    "Waiting messages are seen only as extra run ids in sessions.list's activeRunIds; builds "
    "that leave activeRunIds out hide them.",
    "Wait timeouts are not reported: 2026.5.x builds are shown with no timeout, 2026.7 and "
    "later with their 15 s wait slice.",
    "Lock age counts from the first sign of the run (its first event, or startedAt in "
    "sessions.list), not from when the registry entry was created.",
    "Dispatch skips are seen only when an abort drops a waiting message or the gateway logs "
    "at debug level; a message merged into the active run is not told apart from a skip "
    "the gateway does not log.",
    "Log lines written before Runboard first connected to a gateway process are not read.",
    "Queued follow-up turns look like visible turns; only heartbeats are told apart.",
    "Force-clear cannot clear a registry entry: it aborts the run with chat.abort, which "
    "leaves an entry held on builds that leak aborted runs (2026.5.x).",
)
