"""Roles are Django groups; these helpers answer "may this user do that"."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from .models import Role

AnyUser = AbstractBaseUser | AnonymousUser


def user_roles(user: AnyUser) -> set[str]:
    if not user.is_authenticated:
        return set()
    cached = getattr(user, "_medrlhf_roles", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True))  # type: ignore[union-attr]
        if user.is_superuser:  # type: ignore[union-attr]
            cached.add(Role.ADMIN)
        user._medrlhf_roles = cached  # type: ignore[union-attr]
    return cached


def has_role(user: AnyUser, *roles: str) -> bool:
    return bool(user_roles(user) & set(roles))


def is_physician(user: AnyUser) -> bool:
    return has_role(user, Role.PHYSICIAN)


def is_admin(user: AnyUser) -> bool:
    return has_role(user, Role.ADMIN)


def is_researcher(user: AnyUser) -> bool:
    return has_role(user, Role.RESEARCHER)


def can_export(user: AnyUser) -> bool:
    return has_role(user, Role.RESEARCHER, Role.ADMIN)
