"""API tokens, stored hashed (see ``services.tokens``)."""

from __future__ import annotations

from django.conf import settings as django_settings
from django.db import models


class ApiToken(models.Model):
    """An API token, stored as its SHA-256 digest: the key itself is shown
    once, when it is issued, and a copy of the database cannot be used to
    call the API. Tokens expire (``API_TOKEN_TTL``), can be rotated and
    revoked; ``services.tokens`` issues and checks them."""

    user = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="api_tokens",
    )
    digest = models.CharField(max_length=64, unique=True)
    # The key's first characters, to tell a user's tokens apart in the admin.
    prefix = models.CharField(max_length=12)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user_id})"
