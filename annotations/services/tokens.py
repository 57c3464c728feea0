"""API tokens: issued with an expiry, stored hashed, rotated and revoked.

A key is ``mrl_`` and 43 random URL-safe characters. The database keeps its
SHA-256 digest and first characters only, so the key is shown once, when it
is issued. Each user holds at most ``MAX_ACTIVE`` live tokens; issuing one
more revokes the oldest.
"""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from ..audit import audit_record
from ..models import ApiToken
from ..users import User

PREFIX = "mrl_"
MAX_ACTIVE = 10


def token_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def token_issue(
    *, user: User, request: HttpRequest | None = None
) -> tuple[str, ApiToken]:
    """A new key for ``user`` (returned once) and its stored record."""
    key = PREFIX + secrets.token_urlsafe(32)
    now = timezone.now()
    token = ApiToken.objects.create(
        user=user,
        digest=token_digest(key),
        prefix=key[: len(PREFIX) + 4],
        expires_at=now + settings.API_TOKEN_TTL,
    )
    live = ApiToken.objects.filter(user=user, revoked_at=None, expires_at__gt=now)
    stale = list(live.order_by("-created_at").values_list("pk", flat=True)[MAX_ACTIVE:])
    if stale:
        ApiToken.objects.filter(pk__in=stale).update(revoked_at=now)
    audit_record(
        action="token_issue",
        actor=user,
        obj=token,
        detail={"prefix": token.prefix, "expires_at": token.expires_at.isoformat()},
        request=request,
    )
    return key, token


def token_revoke(
    *, token: ApiToken, actor: User, request: HttpRequest | None = None
) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at=None).update(
        revoked_at=timezone.now()
    )
    audit_record(
        action="token_revoke",
        actor=actor,
        obj=token,
        detail={"prefix": token.prefix},
        request=request,
    )


@transaction.atomic
def token_rotate(
    *, token: ApiToken, request: HttpRequest | None = None
) -> tuple[str, ApiToken]:
    """Revoke ``token`` and issue its successor."""
    token_revoke(token=token, actor=token.user, request=request)
    return token_issue(user=token.user, request=request)
