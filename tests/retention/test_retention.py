"""``adminpanel.retention.prune``: what goes, what stays, and in how many transactions."""

from __future__ import annotations

import pytest

from adminpanel import retention
from adminpanel.audit import chain as audit
from adminpanel.models import AuditEntry, DispatchSkip, Flag, Run, Session, TimelineEvent
from adminpanel.retention import Pruned
from tests.retention.support import DAY, NOW, flag, make_session, skips, timeline_events

pytestmark = pytest.mark.django_db


def test_timeline_events_older_than_the_cutoff_go_and_younger_ones_stay() -> None:
    session = make_session()
    timeline_events(session, 31 * DAY, count=3)
    young = timeline_events(session, 29 * DAY, count=2)

    result = retention.prune(NOW, days=30, batch=100)

    assert result.tables["timeline events"] == Pruned(deleted=3, batches=1)
    assert set(TimelineEvent.objects.values_list("pk", flat=True)) == {e.pk for e in young}


def test_dispatch_skips_older_than_the_cutoff_go_and_younger_ones_stay() -> None:
    session = make_session()
    skips(session, 40 * DAY, count=2)
    young = skips(session, 2 * DAY)

    result = retention.prune(NOW, days=30, batch=100)

    assert result.tables["dispatch skips"] == Pruned(deleted=2, batches=1)
    assert list(DispatchSkip.objects.values_list("pk", flat=True)) == [young[0].pk]


def test_flags_cleared_before_the_cutoff_go_and_flags_cleared_since_stay() -> None:
    session = make_session()
    flag(session, "stuck", raised_age=50 * DAY, cleared_age=31 * DAY)
    recent = flag(session, "skip_burst", raised_age=50 * DAY, cleared_age=29 * DAY)

    result = retention.prune(NOW, days=30, batch=100)

    assert result.tables["cleared flags"] == Pruned(deleted=1, batches=1)
    assert list(Flag.objects.values_list("pk", flat=True)) == [recent.pk]


def test_active_flags_stay_however_old_they_are() -> None:
    session = make_session()
    active = flag(session, "stuck", raised_age=400 * DAY, cleared_age=None)

    result = retention.prune(NOW, days=1, batch=100)

    assert result.tables["cleared flags"] == Pruned(deleted=0, batches=0)
    assert list(Flag.objects.values_list("pk", flat=True)) == [active.pk]


def test_audit_entries_are_never_pruned_and_their_chain_stays_whole() -> None:
    for n in range(3):
        audit.append(kind="intent", actor="operator", action="force_clear", reason=f"r{n}")
    # A year from now every entry is far older than the retention.
    result = retention.prune(NOW.replace(year=NOW.year + 1), days=1, batch=1)

    assert result.deleted == 0
    assert AuditEntry.objects.count() == 3
    assert audit.verify().ok


def test_sessions_and_runs_the_pruned_rows_belonged_to_stay() -> None:
    session = make_session()
    Run.objects.create(gateway=session.gateway, session=session, run_id="run-1")
    timeline_events(session, 60 * DAY, count=2)
    skips(session, 60 * DAY)
    flag(session, "stuck", raised_age=60 * DAY, cleared_age=60 * DAY)

    result = retention.prune(NOW, days=30, batch=100)

    assert result.deleted == 4
    assert Session.objects.filter(pk=session.pk).exists()
    assert Run.objects.filter(session=session).count() == 1


def test_35_old_rows_go_in_4_batches_of_at_most_10() -> None:
    session = make_session()
    timeline_events(session, 45 * DAY, count=35)

    result = retention.prune(NOW, days=30, batch=10)

    assert result.tables["timeline events"] == Pruned(deleted=35, batches=4)
    assert not TimelineEvent.objects.exists()


def test_a_batch_deletes_the_oldest_rows_first() -> None:
    session = make_session()
    oldest = timeline_events(session, 90 * DAY, count=2)
    timeline_events(session, 40 * DAY, count=2)
    cutoff = retention.cutoff_for(NOW, 30)

    assert retention.delete_batch(retention.TARGETS[0], cutoff, 2)[0] == 2

    left = set(TimelineEvent.objects.values_list("pk", flat=True))
    assert left.isdisjoint(e.pk for e in oldest) and len(left) == 2


def test_prune_pauses_between_full_batches_only() -> None:
    session = make_session()
    timeline_events(session, 45 * DAY, count=25)
    pauses: list[float] = []

    retention.prune(NOW, days=30, batch=10, pause_s=0.25, sleep=pauses.append)

    assert pauses == [0.25, 0.25]  # after the two full batches; the third (5 rows) is the last


def test_a_dry_run_counts_what_would_go_and_deletes_nothing() -> None:
    session = make_session()
    timeline_events(session, 45 * DAY, count=35)
    skips(session, 45 * DAY)

    result = retention.prunable(NOW, days=30, batch=10)

    assert result.dry_run
    assert result.tables["timeline events"] == Pruned(deleted=35, batches=4)
    assert result.tables["dispatch skips"] == Pruned(deleted=1, batches=1)
    assert TimelineEvent.objects.count() == 35 and DispatchSkip.objects.count() == 1


def test_prune_refuses_a_retention_shorter_than_a_day() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        retention.prune(NOW, days=0, batch=10)
