"""The chain's head is noted outside the database (the log, and a head file when set), so
``verify_audit --head-file`` catches newest entries cut off the chain."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from structlog.testing import capture_logs

from adminpanel.audit import head
from adminpanel.models import AuditEntry
from tests.audit.support import attempt, tamper

pytestmark = pytest.mark.django_db

TABLE = AuditEntry._meta.db_table


@pytest.fixture(autouse=True)
def fresh_recorder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(head, "RECORDER", head.Recorder())


@pytest.fixture
def head_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "audit-head.jsonl"
    with override_settings(
        RUNBOARD_AUDIT_HEAD_FILE=str(path),
        RUNBOARD_AUDIT_HEAD_EVERY=1,
        RUNBOARD_AUDIT_HEAD_INTERVAL_S=3600.0,
    ):
        yield path


def verify(*args: str) -> str:
    out = io.StringIO()
    call_command("verify_audit", *args, stdout=out)
    return out.getvalue()


def three_attempts(capture: Callable[..., object]) -> list[AuditEntry]:
    with capture(execute=True):  # the head is noted once the append commits
        for n in range(3):
            attempt(reason=f"reason {n}", request_id=f"req-{n}")
    return list(AuditEntry.objects.order_by("seq"))


def test_each_append_past_the_count_records_the_head_in_the_file_and_the_log(
    head_file: Path, django_capture_on_commit_callbacks: Callable[..., object]
) -> None:
    with capture_logs() as logs:
        rows = three_attempts(django_capture_on_commit_callbacks)
    lines = [json.loads(line) for line in head_file.read_text().splitlines()]
    assert [(line["seq"], line["hash"]) for line in lines] == [(r.seq, r.hash) for r in rows]
    noted = [e for e in logs if e["event"] == "audit_head_recorded"]
    assert [(e["seq"], e["hash"]) for e in noted] == [(r.seq, r.hash) for r in rows]


def test_the_head_is_recorded_every_n_entries_or_after_the_interval() -> None:
    recorder = head.Recorder()
    with override_settings(RUNBOARD_AUDIT_HEAD_EVERY=10, RUNBOARD_AUDIT_HEAD_INTERVAL_S=60.0):
        assert recorder.due(1, now=0.0)  # the first one this process appends
        assert not recorder.due(5, now=10.0)
        assert recorder.due(11, now=20.0)  # ten entries since
        assert not recorder.due(12, now=50.0)
        assert recorder.due(13, now=81.0)  # a minute since


def test_a_head_going_back_is_warned_about_once_and_not_recorded() -> None:
    recorder = head.Recorder()
    with override_settings(RUNBOARD_AUDIT_HEAD_EVERY=1, RUNBOARD_AUDIT_HEAD_INTERVAL_S=60.0):
        assert recorder.due(50, now=0.0, hash_="a" * 64)
        with capture_logs() as logs:
            assert not recorder.due(40, now=1.0, hash_="b" * 64)
            assert not recorder.observed(40, "b" * 64, now=2.0)
    # The newest record stays the higher head, so verify_audit --head-file reports the cut.
    assert [e["event"] for e in logs] == ["audit_head_went_back"]
    assert (logs[0]["seq"], logs[0]["recorded_seq"]) == (40, 50)
    assert recorder.last_seq == 50


def test_the_database_head_is_recorded_when_it_changed_and_not_again_while_it_stays() -> None:
    recorder = head.Recorder()
    assert recorder.observed(3, "a" * 64, now=0.0)
    assert not recorder.observed(3, "a" * 64, now=60.0)
    assert recorder.observed(4, "b" * 64, now=120.0)


def test_the_same_seq_with_another_hash_is_a_head_gone_back() -> None:
    recorder = head.Recorder()
    assert recorder.observed(3, "a" * 64, now=0.0)
    with capture_logs() as logs:
        assert not recorder.observed(3, "c" * 64, now=60.0)
    assert logs[0]["event"] == "audit_head_went_back"


def test_a_head_file_written_earlier_is_where_the_recorder_carries_on(
    head_file: Path, django_capture_on_commit_callbacks: Callable[..., object]
) -> None:
    rows = three_attempts(django_capture_on_commit_callbacks)
    tamper(f"DELETE FROM {TABLE} WHERE seq >= %s", [5])
    recorder = head.Recorder()
    head.start_from_file(recorder)
    with capture_logs() as logs:
        assert not head.check_current(recorder)
    assert logs[0]["event"] == "audit_head_went_back"
    assert (logs[0]["seq"], logs[0]["recorded_seq"]) == (4, 6)
    assert head.newest(head_file).hash == rows[-1].hash


def test_an_intact_chain_passes_against_its_head_file(
    head_file: Path, django_capture_on_commit_callbacks: Callable[..., object]
) -> None:
    rows = three_attempts(django_capture_on_commit_callbacks)
    out = verify("--head-file", str(head_file))
    assert out.strip() == f"audit chain intact: 6 entries, head #6 {rows[-1].hash}"


def test_a_cut_tail_is_caught_with_the_head_file(
    head_file: Path, django_capture_on_commit_callbacks: Callable[..., object]
) -> None:
    rows = three_attempts(django_capture_on_commit_callbacks)
    tamper(f"DELETE FROM {TABLE} WHERE seq >= %s", [5])
    assert verify().startswith("audit chain intact: 4 entries")  # whole without the file
    with pytest.raises(CommandError) as caught:
        verify("--head-file", str(head_file))
    assert caught.value.returncode == 1
    message = str(caught.value)
    assert "entry #5-#6 was removed" in message and f"#6 {rows[-1].hash[:16]}" in message


def test_a_tail_cut_and_grown_again_past_the_newest_record_is_caught(
    head_file: Path, django_capture_on_commit_callbacks: Callable[..., object]
) -> None:
    three_attempts(django_capture_on_commit_callbacks)
    tamper(f"DELETE FROM {TABLE} WHERE seq >= %s", [5])
    with capture_logs() as logs, django_capture_on_commit_callbacks(execute=True):
        for n in range(2):  # #5 and #6 again (not recorded: behind #6), then #7, #8
            attempt(reason=f"after the cut {n}", request_id=f"req-cut-{n}")
    assert head.newest(head_file).seq == 8  # the newest record matches the regrown chain
    assert "audit_head_went_back" in [e["event"] for e in logs]
    with pytest.raises(CommandError) as caught:
        verify("--head-file", str(head_file))
    assert "entry #5" in str(caught.value) and "differs from the head recorded" in str(caught.value)


def test_a_recorded_head_entry_rewritten_is_caught(
    head_file: Path, django_capture_on_commit_callbacks: Callable[..., object]
) -> None:
    rows = three_attempts(django_capture_on_commit_callbacks)
    # Forge a head of another hash for #6 (as if the chain was rebuilt entirely).
    forged = head.Head(6, "f" * 64, "2026-01-01T00:00:00+00:00")
    head_file.write_text(head_file.read_text() + forged.line())
    with pytest.raises(CommandError) as caught:
        verify("--head-file", str(head_file))
    assert f"entry #6 (id {rows[5].pk})" in str(caught.value)
    assert "differs from the head recorded" in str(caught.value)


def test_a_torn_last_line_falls_back_to_the_head_before_it(
    head_file: Path, django_capture_on_commit_callbacks: Callable[..., object]
) -> None:
    three_attempts(django_capture_on_commit_callbacks)
    head_file.write_text(head_file.read_text() + '{"seq": 7, "ha')
    assert head.newest(head_file).seq == 6


def test_a_missing_or_empty_head_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot read the head file"):
        verify("--head-file", str(tmp_path / "nope"))
    (tmp_path / "empty").write_text("")
    with pytest.raises(CommandError, match="holds no head record"):
        verify("--head-file", str(tmp_path / "empty"))
