"""Attack: act without leaving a trace. Who looked at which patient image,
and what an admin changed in the Django admin (users, passwords, roles),
now go to the append-only audit log."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group

from annotations.models import AuditEvent, ImageSource, Role
from models_ml.models import ModelKind, ModelVersion
from tests.factories import ImageFactory

pytestmark = pytest.mark.django_db


def _form_data(response: Any) -> dict[str, Any]:
    """What the admin's change page would post back unchanged."""
    data: dict[str, Any] = {}
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        forms += list(formset.forms)
        management = formset.management_form
        for name, field in management.fields.items():
            data[management.add_prefix(name)] = management.initial.get(
                name, field.initial
            )
    for form in forms:
        for name, field in form.fields.items():
            value = form.initial.get(name, field.initial)
            if value is None or name == "password":
                continue
            if hasattr(value, "all"):
                value = [v.pk for v in value.all()]
            elif hasattr(value, "date") and hasattr(value, "time"):  # split widget
                data[form.add_prefix(name) + "_0"] = f"{value:%Y-%m-%d}"
                data[form.add_prefix(name) + "_1"] = f"{value:%H:%M:%S}"
                continue
            elif isinstance(value, list):
                value = [getattr(v, "pk", v) for v in value]
            data[form.add_prefix(name)] = value
    return data


def test_an_admin_changing_a_users_roles_is_audited(client, admin_user, physician):
    client.force_login(admin_user)
    url = f"/admin/auth/user/{physician.pk}/change/"
    data = _form_data(client.get(url))
    researcher = Group.objects.get_or_create(name=Role.RESEARCHER)[0]
    data["groups"] = [*data.get("groups", []), researcher.pk]
    data["is_active"] = "on"
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    event = AuditEvent.objects.get(action="admin_role_change")
    assert event.actor_id == admin_user.pk
    assert event.object_id == str(physician.pk)
    assert event.detail["added"] == [Role.RESEARCHER] and event.detail["removed"] == []
    change = AuditEvent.objects.get(action="admin_change", object_id=str(physician.pk))
    assert "Groups" in change.detail["fields"]


def test_an_admin_setting_a_users_password_is_audited_without_it(
    client, admin_user, physician
):
    client.force_login(admin_user)
    secret = "a new Passw0rd that is long enough"
    response = client.post(
        f"/admin/auth/user/{physician.pk}/password/",
        {"password1": secret, "password2": secret, "usable_password": "true"},
    )
    assert response.status_code == 302
    physician.refresh_from_db()
    assert physician.check_password(secret)
    event = AuditEvent.objects.get(action="admin_password_change")
    assert event.actor_id == admin_user.pk
    assert event.object_id == str(physician.pk)
    assert secret not in str(event.detail)


def test_an_admin_deleting_a_user_is_audited(client, admin_user, make_user):
    victim = make_user(Role.PHYSICIAN)
    admin_user.is_superuser = True  # the admin role itself may not delete users
    admin_user.save()
    client.force_login(admin_user)
    response = client.post(f"/admin/auth/user/{victim.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="admin_delete")
    assert event.detail["name"] == victim.username
    assert event.actor_id == admin_user.pk


def test_who_looked_at_which_patient_image_is_audited(client_as, admin_user):
    real = ImageFactory(source=ImageSource.REAL)
    admin = client_as(Role.ADMIN)
    assert admin.get(f"/api/images/{real.uid}/").status_code == 200
    assert admin.get(f"/api/images/{real.uid}/file/").status_code == 200
    views = AuditEvent.objects.filter(action="image_view", object_id=str(real.pk))
    assert sorted(views.values_list("detail__what", flat=True)) == ["file", "metadata"]
    assert {e.actor_id for e in views} == {admin.user.pk}


def test_the_page_urls_of_a_patient_image_are_audited(client, admin_user):
    real = ImageFactory(source=ImageSource.REAL)
    client.force_login(admin_user)
    assert client.get(f"/images/{real.uid}/preview.png").status_code == 200
    event = AuditEvent.objects.get(action="image_view")
    assert event.detail["what"] == "preview" and event.actor_id == admin_user.pk


def test_generated_images_are_not_patient_data_and_not_logged(client_as, tmp_path):
    version = ModelVersion.objects.create(
        name="v", kind=ModelKind.DIFFUSION, path=str(tmp_path)
    )
    generated = ImageFactory(
        source=ImageSource.GENERATED, model_version=version, dataset=None
    )
    client_as(Role.ADMIN).get(f"/api/images/{generated.uid}/file/")
    assert not AuditEvent.objects.filter(action="image_view").exists()
