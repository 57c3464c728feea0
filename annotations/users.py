"""The user types every signature uses.

The project keeps Django's own user model (``AUTH_USER_MODEL`` is
``auth.User``), so a signed-in physician, admin or researcher is a ``User``.
``AnyUser`` is what ``request.user`` may be before anything checked the login.
"""

from __future__ import annotations

from typing import cast

from django.contrib.auth.models import AnonymousUser, User
from django.http import HttpRequest
from rest_framework.request import Request

__all__ = ["AnyUser", "AuthedRequest", "User", "signed_in"]

AnyUser = User | AnonymousUser


class AuthedRequest(HttpRequest):
    """A request whose view is behind a login check (``login_required``,
    ``role_required``): its user is signed in."""

    user: User


def signed_in(request: HttpRequest | Request) -> User:
    """The signed-in user of a request whose authentication a view's
    permission classes or decorators have already checked.

    Only a type narrowing, with no check of its own: the check is the
    view's, before this runs.
    """
    return cast(User, request.user)
