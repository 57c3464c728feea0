import re

import pytest
from django.contrib.auth import get_user_model

from annotations.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_admin_creates_a_user_with_role_and_one_time_random_password(
    client, admin_user
):
    client.force_login(admin_user)
    response = client.post(
        "/admin/auth/user/add/",
        {
            "username": "dr_new",
            "email": "",
            "role": "physician",
            "expert_level": "expert",
        },
        follow=True,
    )
    assert response.status_code == 200
    text = response.content.decode()
    password = re.search(r"shown once, pass it on securely\): (\S+)<", text).group(1)
    user = get_user_model().objects.get(username="dr_new")
    assert user.check_password(password)
    assert list(user.groups.values_list("name", flat=True)) == ["physician"]
    assert user.rater_profile.expert_level == "expert"
    assert AuditEvent.objects.filter(action="user_create", actor=admin_user).exists()


def test_physician_cannot_use_the_admin(client, physician):
    client.force_login(physician)
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_audit_events_cannot_be_changed_from_the_admin(client, admin_user):
    client.force_login(admin_user)
    event = AuditEvent.objects.create(action="x")
    response = client.post(
        f"/admin/annotations/auditevent/{event.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()
