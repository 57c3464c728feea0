"""Token auth stays hand-written SQL (the ORM added 31-33 % CPU per rating in
bench/audit_token.py, session 12); it must answer what the ORM would, field by
field: the same token and user, every field loaded, the same roles, and the
same refusals for an unknown, revoked or expired key and an inactive user."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from rest_framework import exceptions

from annotations.authentication import TokenAuthentication
from annotations.models import ApiToken, Role
from annotations.services.tokens import token_issue
from tests.security.token_orm import token_auth_orm

pytestmark = pytest.mark.django_db


def _same_instance(lean: Any, orm: Any) -> None:
    assert type(lean) is type(orm)
    assert lean.get_deferred_fields() == set() == orm.get_deferred_fields()
    assert (lean._state.adding, lean._state.db) == (False, orm._state.db)
    for field in type(orm)._meta.concrete_fields:
        got, want = getattr(lean, field.attname), getattr(orm, field.attname)
        assert (got, type(got)) == (want, type(want)), field.name


@pytest.mark.parametrize(
    ("groups", "superuser"),
    [
        ((Role.PHYSICIAN, Role.RESEARCHER), False),
        ((Role.PHYSICIAN,), False),
        ((), False),
        ((), True),
    ],
    ids=["two-groups", "one-group", "no-group", "superuser"],
)
def test_a_live_token_gives_what_the_orm_gives(make_user, groups, superuser):
    user = make_user(role=None, is_superuser=superuser)
    for name in groups:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    key = token_issue(user=user)[0]
    lean_user, lean_token = TokenAuthentication().authenticate_credentials(key)
    orm_user, orm_token = token_auth_orm(key)
    _same_instance(lean_token, orm_token)
    _same_instance(lean_user, orm_user)
    assert lean_token.user is lean_user and lean_token.user_id == orm_token.user_id
    assert lean_user._medrlhf_roles == orm_user._medrlhf_roles
    assert (Role.ADMIN in lean_user._medrlhf_roles) is superuser


def _refusal(call: Any, key: str) -> str:
    with pytest.raises(exceptions.AuthenticationFailed) as raised:
        call(key)
    return str(raised.value.detail)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown", "Invalid token."),
        ("revoked", "Invalid token."),
        ("expired", "Invalid token."),
        ("inactive", "User inactive or deleted."),
    ],
)
def test_a_refused_token_is_refused_alike(physician, case, message):
    key, token = token_issue(user=physician)
    now = timezone.now()
    if case == "unknown":
        key += "x"
    elif case == "revoked":
        ApiToken.objects.filter(pk=token.pk).update(revoked_at=now)
    elif case == "expired":
        ApiToken.objects.filter(pk=token.pk).update(expires_at=now - timedelta(1))
    else:
        physician.is_active = False
        physician.save(update_fields=["is_active"])
    lean = TokenAuthentication().authenticate_credentials
    assert _refusal(lean, key) == _refusal(token_auth_orm, key) == message
