"""Audit entries cannot be changed or deleted through the application (the model and its
querysets refuse), and on PostgreSQL not even with SQL (a trigger refuses)."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from adminpanel.models import AuditEntry
from tests.audit.support import attempt

pytestmark = pytest.mark.django_db

TABLE = AuditEntry._meta.db_table


def test_the_model_refuses_to_save_a_changed_entry_or_delete_one() -> None:
    intent, _ = attempt()
    intent.reason = "changed"
    with pytest.raises(PermissionError):
        intent.save()
    with pytest.raises(PermissionError):
        intent.delete()


def test_querysets_refuse_bulk_updates_and_deletes() -> None:
    attempt()
    with pytest.raises(PermissionError):
        AuditEntry.objects.update(reason="changed")
    with pytest.raises(PermissionError):
        AuditEntry.objects.all().delete()


@pytest.mark.postgres_only  # the trigger is PostgreSQL's; make test-backends runs it
@pytest.mark.parametrize("sql", [f"UPDATE {TABLE} SET reason = 'changed'", f"DELETE FROM {TABLE}"])
def test_on_postgresql_a_trigger_refuses_update_and_delete_in_sql(sql: str) -> None:
    attempt()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)
    assert AuditEntry.objects.filter(reason="changed").count() == 0
    assert AuditEntry.objects.count() == 2
