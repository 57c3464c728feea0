"""Attacks on API tokens: a copy of the database (or a backup) used to call
the API, and a leaked token that works forever.

Tokens are stored as SHA-256 digests, expire (API_TOKEN_TTL), and can be
rotated and revoked; every issue and revocation is audited.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from annotations.models import ApiToken, AuditEvent
from annotations.services.tokens import MAX_ACTIVE, token_issue

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"  # set by tests.factories.UserFactory


def _client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def _works(key: str) -> bool:
    return _client(key).get("/api/ratings/mine/").status_code == 200


def test_the_database_holds_no_usable_key(api, physician):
    response = api.post(
        "/api/auth/token/", {"username": physician.username, "password": PASSWORD}
    )
    key = response.json()["token"]
    stored = ApiToken.objects.get(user=physician)
    assert key not in (stored.digest, stored.prefix) and key.startswith(stored.prefix)
    # What a stolen copy of the table holds does not authenticate.
    assert not _works(stored.digest) and not _works(stored.prefix)
    assert _works(key)
    assert response.json()["expires_at"]


def test_an_expired_token_is_refused(physician):
    key, token = token_issue(user=physician)
    ApiToken.objects.filter(pk=token.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    response = _client(key).get("/api/ratings/mine/")
    assert response.status_code in (401, 403)
    assert response.json()["detail"] == "Invalid token."


def test_rotation_replaces_the_token_and_the_old_one_stops(physician):
    old, _ = token_issue(user=physician)
    response = _client(old).post("/api/auth/token/rotate/")
    assert response.status_code == 200
    new = response.json()["token"]
    assert new != old and _works(new) and not _works(old)
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert actions.count("token_issue") == 2 and "token_revoke" in actions


def test_revoking_logs_the_client_out(physician):
    key, _ = token_issue(user=physician)
    assert _client(key).post("/api/auth/token/revoke/").status_code == 204
    assert not _works(key)


def test_a_session_cannot_rotate_a_token_it_does_not_hold(client, physician):
    client.force_login(physician)
    assert client.post("/api/auth/token/rotate/").status_code in (401, 403)


def test_a_user_holds_at_most_ten_live_tokens(physician):
    keys = [token_issue(user=physician)[0] for _ in range(MAX_ACTIVE + 2)]
    assert [_works(k) for k in keys] == [False, False] + [True] * MAX_ACTIVE
