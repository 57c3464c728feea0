"""Roles are Django groups; these helpers answer "may this user do that".

Only a signed-in user has a role, so to a type checker a true answer of
``has_role`` and the ``is_*`` checks narrows ``user`` to ``User``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeGuard

from .models import Role
from .users import AnyUser, User


def roles_preload(user: User, group_names: Iterable[str]) -> set[str]:
    """Remember ``user``'s roles from group names read with the user row."""
    roles = set(group_names)
    if user.is_superuser:
        roles.add(Role.ADMIN)
    user._medrlhf_roles = roles  # type: ignore[attr-defined]  # a cache on the instance
    return roles


def user_roles(user: AnyUser) -> set[str]:
    if not user.is_authenticated:
        return set()
    cached = getattr(user, "_medrlhf_roles", None)
    if cached is None:
        cached = roles_preload(
            user,
            user.groups.values_list("name", flat=True),
        )
    return cached


def has_role(user: AnyUser, *roles: str) -> TypeGuard[User]:
    return bool(user_roles(user) & set(roles))


def is_physician(user: AnyUser) -> TypeGuard[User]:
    return has_role(user, Role.PHYSICIAN)


def is_admin(user: AnyUser) -> TypeGuard[User]:
    return has_role(user, Role.ADMIN)


def is_researcher(user: AnyUser) -> TypeGuard[User]:
    return has_role(user, Role.RESEARCHER)


def can_export(user: AnyUser) -> TypeGuard[User]:
    return has_role(user, Role.RESEARCHER, Role.ADMIN)
