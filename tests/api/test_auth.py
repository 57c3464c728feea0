"""Token login: audit, lockout after repeated failures, throttling."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from annotations.models import ApiToken, AuditEvent
from annotations.services.tokens import token_digest, token_issue

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"  # set by tests.factories.UserFactory
TOKEN_URL = "/api/auth/token/"


def test_right_password_gives_a_token_that_authenticates_and_is_audited(api, physician):
    response = api.post(
        TOKEN_URL, {"username": physician.username, "password": PASSWORD}
    )
    assert response.status_code == 200
    key = response.json()["token"]
    assert ApiToken.objects.get(user=physician).digest == token_digest(key)
    assert AuditEvent.objects.filter(action="login", actor=physician).count() == 1
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/ratings/mine/").status_code == 200


def test_each_login_issues_a_new_token_and_both_work(api, physician):
    body = {"username": physician.username, "password": PASSWORD}
    first = api.post(TOKEN_URL, body).json()["token"]
    second = api.post(TOKEN_URL, body).json()["token"]
    assert first != second
    for key in (first, second):
        api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        assert api.get("/api/ratings/mine/").status_code == 200


def test_wrong_password_is_401_and_audited_as_a_failed_login(api, physician):
    response = api.post(TOKEN_URL, {"username": physician.username, "password": "no"})
    assert response.status_code == 401
    assert response.json()["code"] == "login_failed"
    assert "token" not in response.json()
    failed = AuditEvent.objects.get(action="login_failed")
    assert failed.actor_name == physician.username


def test_repeated_wrong_passwords_lock_the_account_out_even_for_the_right_one(
    api, physician, settings
):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        api.post(TOKEN_URL, {"username": physician.username, "password": "wrong"})
    response = api.post(
        TOKEN_URL, {"username": physician.username, "password": PASSWORD}
    )
    assert response.status_code == 429
    assert response.json()["code"] == "locked_out"
    assert not ApiToken.objects.filter(user=physician).exists()


def test_a_bad_token_is_refused(api):
    api.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    response = api.get("/api/ratings/mine/")
    # 403, not 401: session authentication comes first in the settings.
    assert response.status_code == 403
    assert response.json()["detail"] == "Invalid token."


def test_login_attempts_are_throttled_per_client(api, physician, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "login": "2/minute",
        },
    }
    body = {"username": physician.username, "password": PASSWORD}
    codes = [api.post(TOKEN_URL, body).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_session_login_works_for_the_api(client, physician):
    client.force_login(physician)
    assert client.get("/api/ratings/mine/").status_code == 200


def test_missing_fields_are_named(api):
    response = api.post(TOKEN_URL, {"username": "x"})
    assert response.status_code == 400
    assert "password" in response.json()


def _token_client(api, user):
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_issue(user=user)[0]}")
    return api


def test_a_token_brings_its_user_and_roles_in_one_query(
    api, make_user, django_assert_num_queries
):
    from annotations.authentication import TokenAuthentication
    from annotations.models import Role
    from annotations.roles import is_admin, is_physician, is_researcher

    user = make_user(Role.PHYSICIAN)
    user.groups.add(Group.objects.get_or_create(name=Role.RESEARCHER)[0])
    key = token_issue(user=user)[0]
    with django_assert_num_queries(1):
        found, token = TokenAuthentication().authenticate_credentials(key)
        assert (found.pk, token.user_id) == (user.pk, user.pk)
        assert token.digest == token_digest(key)
        assert is_physician(found) and is_researcher(found) and not is_admin(found)
        assert found.check_password(PASSWORD) is True  # every user field loaded


def test_a_token_of_a_user_without_groups_has_no_roles(api, make_user, make_round):
    rnd = make_round(1)
    user = make_user(role=None)
    response = _token_client(api, user).get(f"/api/rounds/{rnd.pk}/next/")
    assert response.status_code == 403
    assert response.json()["detail"] == "Only physicians rate images."


def test_a_superuser_token_counts_as_admin(api, make_user):
    from annotations.authentication import TokenAuthentication
    from annotations.roles import is_admin

    user = make_user(role=None, is_superuser=True)
    found, _ = TokenAuthentication().authenticate_credentials(token_issue(user=user)[0])
    assert is_admin(found)


def test_an_inactive_users_token_is_refused(api, physician):
    _token_client(api, physician)
    physician.is_active = False
    physician.save(update_fields=["is_active"])
    response = api.get("/api/ratings/mine/")
    assert response.status_code == 403
    assert response.json()["detail"] == "User inactive or deleted."
