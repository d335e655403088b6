"""API tokens may expire; audit rows say which hash scheme they use (existing rows: 1, the
unkeyed SHA-256); on PostgreSQL a trigger refuses UPDATE and DELETE on the audit table."""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

TABLE = "adminpanel_auditentry"

# One statement per execute, without parameters (the function body has a % of its own).
CREATE_TRIGGER = (
    """CREATE OR REPLACE FUNCTION runboard_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit entries are append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql""",
    f"DROP TRIGGER IF EXISTS runboard_audit_append_only ON {TABLE}",
    f"""CREATE TRIGGER runboard_audit_append_only BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION runboard_audit_append_only()""",
)
DROP_TRIGGER = (
    f"DROP TRIGGER IF EXISTS runboard_audit_append_only ON {TABLE}",
    "DROP FUNCTION IF EXISTS runboard_audit_append_only()",
)


def run(schema_editor: Any, statements: tuple[str, ...]) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite: the model and its querysets refuse updates and deletes
    for sql in statements:
        schema_editor.execute(sql, None)


def create_trigger(apps: Any, schema_editor: Any) -> None:
    run(schema_editor, CREATE_TRIGGER)


def drop_trigger(apps: Any, schema_editor: Any) -> None:
    run(schema_editor, DROP_TRIGGER)


class Migration(migrations.Migration):
    dependencies = [
        ("adminpanel", "0007_metric_counters"),
    ]

    operations = [
        migrations.AddField(
            model_name="apitoken",
            name="expires_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="auditentry",
            name="scheme",
            field=models.PositiveSmallIntegerField(default=1),
        ),
        migrations.RunPython(create_trigger, drop_trigger),
    ]
