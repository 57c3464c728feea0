"""The audit log refuses UPDATE and DELETE in the database itself.

A trigger on ``annotations_auditevent`` raises on any UPDATE or DELETE, on
PostgreSQL and SQLite alike, so no code path (ORM, raw SQL, the Django
admin, a shell) can rewrite history. Two exceptions:

- deleting a user sets ``actor_id`` to NULL on their events (the FK's
  SET_NULL) and changes nothing else: the name stays in ``actor_name``;
- while ``annotations_audit_unlock`` holds a row, the guard stands aside.
  Nothing in the product writes it; the test suite does, just before it
  empties the database between tests (flush), and removes it after.
"""

from __future__ import annotations

from django.db import migrations

TABLE = "annotations_auditevent"
UNLOCK = "annotations_audit_unlock"
SAME_EXCEPT_ACTOR = (
    "NEW.id = OLD.id AND NEW.actor_id IS NULL "
    "AND NEW.actor_name IS NOT DISTINCT FROM OLD.actor_name "
    "AND NEW.action IS NOT DISTINCT FROM OLD.action "
    "AND NEW.object_type IS NOT DISTINCT FROM OLD.object_type "
    "AND NEW.object_id IS NOT DISTINCT FROM OLD.object_id "
    "AND NEW.detail IS NOT DISTINCT FROM OLD.detail "
    "AND NEW.ip_address IS NOT DISTINCT FROM OLD.ip_address "
    "AND NEW.created_at IS NOT DISTINCT FROM OLD.created_at"
)

POSTGRES = [
    f"CREATE TABLE IF NOT EXISTS {UNLOCK} (reason text NOT NULL)",
    f"""CREATE OR REPLACE FUNCTION annotations_audit_guard() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM {UNLOCK}) THEN
        RETURN COALESCE(NEW, OLD);
    END IF;
    IF TG_OP = 'UPDATE' AND {SAME_EXCEPT_ACTOR} THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql""",
    f"DROP TRIGGER IF EXISTS annotations_audit_guard ON {TABLE}",
    f"""CREATE TRIGGER annotations_audit_guard BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION annotations_audit_guard()""",
    f"DROP TRIGGER IF EXISTS annotations_audit_guard_truncate ON {TABLE}",
    f"""CREATE TRIGGER annotations_audit_guard_truncate BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION annotations_audit_guard()""",
]
POSTGRES_REVERSE = [
    f"DROP TRIGGER IF EXISTS annotations_audit_guard ON {TABLE}",
    f"DROP TRIGGER IF EXISTS annotations_audit_guard_truncate ON {TABLE}",
    "DROP FUNCTION IF EXISTS annotations_audit_guard()",
    f"DROP TABLE IF EXISTS {UNLOCK}",
]

SQLITE_SAME = SAME_EXCEPT_ACTOR.replace("IS NOT DISTINCT FROM", "IS")
SQLITE = [
    f"CREATE TABLE IF NOT EXISTS {UNLOCK} (reason text NOT NULL)",
    f"""CREATE TRIGGER IF NOT EXISTS annotations_audit_no_update
    BEFORE UPDATE ON {TABLE}
    WHEN NOT EXISTS (SELECT 1 FROM {UNLOCK}) AND NOT ({SQLITE_SAME})
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: UPDATE refused'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS annotations_audit_no_delete
    BEFORE DELETE ON {TABLE}
    WHEN NOT EXISTS (SELECT 1 FROM {UNLOCK})
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: DELETE refused'); END""",
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS annotations_audit_no_update",
    "DROP TRIGGER IF EXISTS annotations_audit_no_delete",
    f"DROP TABLE IF EXISTS {UNLOCK}",
]


def _run(schema_editor, statements: list[str]) -> None:
    for statement in statements:
        # No parameters: the SQL's own % signs are not placeholders.
        schema_editor.execute(statement, params=None)


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        _run(schema_editor, POSTGRES)
    elif vendor == "sqlite":
        _run(schema_editor, SQLITE)
    else:  # pragma: no cover - the product supports these two
        raise RuntimeError(f"no audit guard for the {vendor} database")


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    _run(schema_editor, POSTGRES_REVERSE if vendor == "postgresql" else SQLITE_REVERSE)


class Migration(migrations.Migration):
    dependencies = [("annotations", "0007_round_rescore_every")]

    operations = [migrations.RunPython(forwards, backwards)]
