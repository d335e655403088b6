"""Running the flag rules (``adminpanel.detect``) on sessions and writing Flag rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import fields
from operator import attrgetter
from typing import Any

from adminpanel import detect
from adminpanel.ingest.rows import SessionRow, WaiterRow
from adminpanel.ingest.sql import Tables, sql_in
from adminpanel.notify import outbox

# The facts the rules read straight off the session row: every field of
# ``SessionFacts`` but what ingest gathers from other tables. A fact named for no
# column fails on the first session, not silently.
FACT_COLUMNS = tuple(
    f.name for f in fields(detect.SessionFacts) if f.name not in ("waiters", "skips", "outcomes")
)
_fact_values = attrgetter(*FACT_COLUMNS)

# Turn kinds whose admission counts as a success for the alternating-error rule.
ADMISSION_TURN_KINDS = ("visible", "queued_followup")


class FlagWriter:
    """Runs detect over sessions and turns findings into Flag rows."""

    def __init__(self, tables: Tables, thresholds: detect.Thresholds) -> None:
        self.t = tables
        self.th = thresholds

    def evaluate(
        self,
        sessions: Sequence[SessionRow],
        waiters: dict[int, dict[tuple[str, str], WaiterRow]],
        now: float,
    ) -> set[int]:
        """Re-run the rules; write flag changes; return pks of sessions whose flags changed."""
        if not sessions:
            return set()
        pks = [s.id for s in sessions]
        skips, outcomes = self._recent(pks, now)
        active = self._active_flags(pks)
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[int, list[Any]]] = []
        clears: list[tuple[int, list[Any]]] = []
        changed: set[int] = set()
        summaries: list[tuple[int, list[Any]]] = []
        for s in sessions:
            flags = active.get(s.id, {})
            open_waiters = waiters.get(s.id, {})
            if not _may_need_flags(s, flags, open_waiters, s.id in skips or s.id in outcomes):
                continue
            facts = _facts(s, open_waiters, skips.get(s.id, ()), outcomes.get(s.id, []))
            findings = detect.evaluate(facts, now, self.th)
            if self._diff(s.id, findings, flags, now, inserts, updates, clears):
                changed.add(s.id)
            count, worst = len(findings), detect.worst_severity(findings)
            if (count, worst) != (s.flag_count, s.worst_severity):
                s.flag_count, s.worst_severity = count, worst
                summaries.append((s.id, [count, worst]))
                changed.add(s.id)
        self.t.flag_clear.update(clears)  # before inserts: one active flag per code
        self.t.flag.insert(inserts)
        outbox.flags_changed([(i[0], i[1]) for i in inserts], [pk for pk, _ in clears], now)
        self.t.flag_update.update(updates)
        self.t.session_flags.update(summaries)
        return changed

    @staticmethod
    def _diff(
        session_pk: int,
        findings: list[detect.Finding],
        flags: dict[str, tuple[int, str, dict[str, Any]]],
        now: float,
        inserts: list[tuple[Any, ...]],
        updates: list[tuple[int, list[Any]]],
        clears: list[tuple[int, list[Any]]],
    ) -> bool:
        changed = False
        codes = set()
        for f in findings:
            codes.add(f.code)
            current = flags.get(f.code)
            if current is None:
                inserts.append(
                    (session_pk, f.code, f.severity, f.why, f.since, f.details, now, None)
                )
                changed = True
            elif (current[1], current[2]) != (f.severity, f.details):
                # Still true: keep the row and its ``since``, refresh what it says.
                updates.append((current[0], [f.severity, f.why, f.details]))
                changed = True
        for code, (pk, _sev, _details) in flags.items():
            if code not in codes:
                clears.append((pk, [now]))
                changed = True
        return changed

    def _recent(
        self, pks: list[int], now: float
    ) -> tuple[dict[int, list[float]], dict[int, list[tuple[float, str]]]]:
        skip_w, alt_w = detect.windows(self.th)
        skips: dict[int, list[float]] = defaultdict(list)
        outcomes: dict[int, list[tuple[float, str]]] = defaultdict(list)
        where, params = sql_in("session_id", pks)
        dt = self.t.dt
        for session_pk, kind, t in self.t.skip_read.select(
            f"{where} AND ((kind = %s AND at >= %s) OR (kind = %s AND at >= %s))",
            [*params, "skip", dt(now - skip_w), "drain_failed", dt(now - alt_w)],
        ):
            if kind == "skip":
                skips[session_pk].append(t)
            else:
                outcomes[session_pk].append((t, "drain_failed"))
        # Admissions only matter where enough drain failures could make the alternating
        # pattern, so they are read only for those sessions: most sessions have none.
        enough = self.th.alternating_min_failures
        failing, failing_params = sql_in(
            "session_id", [pk for pk, failures in outcomes.items() if len(failures) >= enough]
        )
        kinds, kind_params = sql_in("turn_kind", ADMISSION_TURN_KINDS)
        for session_pk, started in self.t.run_started_read.select(
            f"{failing} AND started_at >= %s AND {kinds}",
            [*failing_params, dt(now - alt_w), *kind_params],
        ):
            outcomes[session_pk].append((started, "ok"))
        for items in outcomes.values():
            items.sort()
        return skips, outcomes

    def _active_flags(self, pks: list[int]) -> dict[int, dict[str, tuple[int, str, Any]]]:
        active: dict[int, dict[str, tuple[int, str, Any]]] = defaultdict(dict)
        where, params = sql_in("session_id", pks)
        for pk, session_pk, code, severity, details in self.t.flag_read.select(
            f"{where} AND cleared_at IS NULL", params
        ):
            active[session_pk][code] = (pk, severity, details)
        return active


def _may_need_flags(
    s: SessionRow, flags: dict[str, Any], waiters: dict[tuple[str, str], WaiterRow], recent: bool
) -> bool:
    """Tick's criterion: an idle session with no waiters, skips or flags cannot be flagged."""
    if s.locked or flags or s.flag_count or recent:
        return True
    return any(w.resolved_at is None for w in waiters.values())


def _facts(
    s: SessionRow,
    waiters: dict[tuple[str, str], WaiterRow],
    skips: Sequence[float],
    outcomes: Sequence[tuple[float, str]],
) -> detect.SessionFacts:
    return detect.SessionFacts(
        **dict(zip(FACT_COLUMNS, _fact_values(s), strict=True)),
        waiters=tuple(
            detect.WaiterFact(w.waiter_id, w.since, w.timeout_ms)
            for w in waiters.values()
            if w.resolved_at is None
        ),
        skips=tuple(sorted(skips)),
        outcomes=tuple(outcomes),
    )
