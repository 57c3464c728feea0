"""Accounts: created by admins only, with random one-time passwords."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from ..audit import audit_record
from ..models import ExpertLevel, RaterProfile, Role
from ..users import User
from ..viewer_keys import key_map_clean


def password_generate() -> str:
    return secrets.token_urlsafe(18)


@transaction.atomic
def user_create(
    *,
    username: str,
    role: str,
    email: str = "",
    expert_level: str = ExpertLevel.SPECIALIST,
    password: str | None = None,
    created_by: User | None = None,
) -> tuple[User, str]:
    """Create an account in one role; returns the user and its password."""
    if role not in Role.values:
        raise ValueError(f"role must be one of {', '.join(Role.values)}, not {role!r}")
    if expert_level not in ExpertLevel.values:
        raise ValueError(
            f"expert_level must be one of {', '.join(ExpertLevel.values)}, "
            f"not {expert_level!r}"
        )
    users = get_user_model()
    if users.objects.filter(username=username).exists():
        raise ValueError(f"user {username!r} already exists")
    password = password or password_generate()
    user = users.objects.create_user(username=username, email=email, password=password)
    if role == Role.ADMIN:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    user.groups.add(Group.objects.get(name=role))
    RaterProfile.objects.create(user=user, expert_level=expert_level)
    audit_record(
        action="user_create",
        actor=created_by,
        obj=user,
        detail={"username": username, "role": role},
    )
    return user, password


@transaction.atomic
def viewer_keys_update(
    *, user: User, key_map: dict[str, str], auto_advance: bool
) -> RaterProfile:
    """Store a physician's keys for the rating page (checked by
    ``viewer_keys.key_map_clean``; raises ``KeyMapError``) and auto-advance."""
    cleaned = key_map_clean(key_map)
    profile, _ = RaterProfile.objects.select_for_update().get_or_create(user=user)
    profile.key_map = cleaned
    profile.auto_advance = bool(auto_advance)
    profile.save(update_fields=["key_map", "auto_advance", "updated_at"])
    audit_record(
        action="viewer_keys_update",
        actor=user,
        obj=profile,
        detail={"key_map": cleaned, "auto_advance": profile.auto_advance},
    )
    return profile
