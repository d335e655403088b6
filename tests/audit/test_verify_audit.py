"""``manage.py verify_audit``: an intact chain passes; an entry edited or removed
underneath the ORM (raw SQL, as an attacker with database access would) is named."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from adminpanel.management.commands.verify_audit import Command
from adminpanel.models import AuditEntry
from tests.audit.support import attempt, tamper

pytestmark = pytest.mark.django_db

TABLE = AuditEntry._meta.db_table


def verify(*args: str) -> str:
    out = io.StringIO()
    call_command("verify_audit", *args, stdout=out)
    return out.getvalue()


def three_attempts() -> list[AuditEntry]:
    for n in range(3):
        attempt(reason=f"reason {n}", request_id=f"req-{n}")
    return list(AuditEntry.objects.order_by("seq"))


def raw(sql: str, params: list[int | str]) -> None:
    """Change the table underneath the ORM, as its owner can (past PostgreSQL's trigger)."""
    tamper(sql, params)


def test_an_intact_chain_passes_and_prints_its_head() -> None:
    rows = three_attempts()
    assert verify().strip() == f"audit chain intact: 6 entries, head #6 {rows[-1].hash}"


def test_an_empty_chain_is_intact() -> None:
    assert verify().startswith("audit chain intact: 0 entries, head #0 ")


@pytest.mark.parametrize(
    ("seq", "column", "value"),
    [
        (3, "reason", "nobody asked"),
        (4, "result", "conflict"),
        (2, "calls", '[{"command":"force_clear","answer":{"cleared":false}}]'),
        (5, "actor", "admin"),
    ],
)
def test_an_entry_edited_with_raw_sql_is_named_as_altered(
    seq: int, column: str, value: str
) -> None:
    rows = three_attempts()
    edited = rows[seq - 1]
    raw(f"UPDATE {TABLE} SET {column} = %s WHERE id = %s", [value, edited.pk])
    with pytest.raises(CommandError) as caught:
        verify()
    message = str(caught.value)
    assert caught.value.returncode == 1
    assert f"entry #{seq} (id {edited.pk})" in message
    assert "altered" in message
    assert f"The {seq - 1} entries before it" in message


def test_a_deleted_entry_is_named_as_removed() -> None:
    rows = three_attempts()
    raw(f"DELETE FROM {TABLE} WHERE id = %s", [rows[3].pk])  # the second attempt's outcome
    with pytest.raises(CommandError) as caught:
        verify()
    message = str(caught.value)
    assert caught.value.returncode == 1
    assert "entry #4 was removed" in message
    assert f"entry #5 (id {rows[4].pk})" in message  # where the chain resumes


def test_a_removed_tail_is_caught_with_the_head_noted_earlier() -> None:
    rows = three_attempts()
    noted = rows[-1].hash
    raw(f"DELETE FROM {TABLE} WHERE id = %s", [rows[-1].pk])
    # Without the noted head a shorter chain is still whole.
    assert verify().startswith("audit chain intact: 5 entries, head #5 ")
    with pytest.raises(CommandError) as caught:
        verify("--expect-head", noted)
    assert caught.value.returncode == 1
    assert "newer entries were removed" in str(caught.value)


def test_a_head_noted_before_newer_entries_still_passes() -> None:
    noted = three_attempts()[-1].hash
    attempt(reason="later")
    assert verify("--expect-head", noted).startswith("audit chain intact: 8 entries, head #8 ")


def test_an_expect_head_that_is_not_a_hash_is_refused() -> None:
    with pytest.raises(CommandError, match="64 hex digits"):
        verify("--expect-head", "abc")


def test_from_the_command_line_a_broken_chain_exits_with_status_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = three_attempts()
    raw(f"UPDATE {TABLE} SET detail = %s WHERE id = %s", ["all fine", rows[1].pk])
    with pytest.raises(SystemExit) as exited:
        Command().run_from_argv(["manage.py", "verify_audit"])
    assert exited.value.code == 1
    assert f"audit chain broken at entry #2 (id {rows[1].pk})" in capsys.readouterr().err
