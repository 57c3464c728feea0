"""The plain-ORM reading of an API token, the reference that the hand-written
statement (``annotations.rating.queries.token_with_user``) is held equal to
(``test_token_auth_parity.py``) and measured against (``bench/audit_token.py``)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import exceptions

from annotations.models import ApiToken
from annotations.roles import roles_preload
from annotations.services.tokens import token_digest


def token_auth_orm(key: str) -> tuple[Any, ApiToken]:
    """The token with its user, then the user's groups: two ORM queries."""
    try:
        token = ApiToken.objects.select_related("user").get(
            digest=token_digest(key), revoked_at=None, expires_at__gt=timezone.now()
        )
    except ApiToken.DoesNotExist:
        raise exceptions.AuthenticationFailed("Invalid token.") from None
    user = token.user
    if not user.is_active:
        raise exceptions.AuthenticationFailed("User inactive or deleted.")
    roles_preload(user, user.groups.values_list("name", flat=True))
    return user, token
