"""Roles are Django groups; these helpers answer "may this user do that"."""

from __future__ import annotations

from collections.abc import Iterable

from .models import Role
from .users import AnyUser


def roles_preload(user: AnyUser, group_names: Iterable[str]) -> set[str]:
    """Remember ``user``'s roles from group names read with the user row."""
    roles = set(group_names)
    if user.is_superuser:  # type: ignore[union-attr]
        roles.add(Role.ADMIN)
    user._medrlhf_roles = roles  # type: ignore[union-attr]
    return roles


def user_roles(user: AnyUser) -> set[str]:
    if not user.is_authenticated:
        return set()
    cached = getattr(user, "_medrlhf_roles", None)
    if cached is None:
        cached = roles_preload(
            user,
            user.groups.values_list("name", flat=True),  # type: ignore[union-attr]
        )
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
