"""Attack: rewrite or erase the audit trail with the ORM, raw SQL or the
Django admin. The database itself refuses UPDATE and DELETE on it (a
trigger on PostgreSQL and on SQLite); deleting a user only detaches their
events (the name stays)."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from annotations.audit import audit_record
from annotations.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def event(admin_user):
    return audit_record(action="login", actor=admin_user, detail={"k": 1})


def _refused(sql: str, params: list) -> None:
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)


def test_raw_sql_cannot_rewrite_an_event(event):
    _refused(
        "UPDATE annotations_auditevent SET action = %s WHERE id = %s",
        ["nothing happened", event.pk],
    )
    assert AuditEvent.objects.get(pk=event.pk).action == "login"


def test_raw_sql_cannot_erase_an_event(event):
    _refused("DELETE FROM annotations_auditevent WHERE id = %s", [event.pk])
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_a_queryset_update_or_delete_is_refused_too(event):
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic():
            AuditEvent.objects.filter(pk=event.pk).update(detail={})
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic():
            AuditEvent.objects.filter(pk=event.pk)._raw_delete(connection.alias)
    assert AuditEvent.objects.get(pk=event.pk).detail == {"k": 1}


def test_only_the_actor_may_be_detached_when_a_user_is_deleted(event, admin_user):
    name = admin_user.username
    admin_user.delete()
    kept = AuditEvent.objects.get(pk=event.pk)
    assert kept.actor_id is None and kept.actor_name == name
    assert kept.action == "login" and kept.detail == {"k": 1}
    # Detaching and editing at once is still an edit.
    other = audit_record(action="x", actor_name="someone")
    _refused(
        "UPDATE annotations_auditevent SET actor_id = NULL, action = %s WHERE id = %s",
        ["y", other.pk],
    )
