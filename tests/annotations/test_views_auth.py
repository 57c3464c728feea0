"""Log in, log out and the lockout after repeated failures."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_login_page_has_no_sign_up(client):
    html = client.get(reverse("login")).content.decode()
    assert 'name="password"' in html
    assert "sign up" not in html.lower() and "register" not in html.lower()


def test_login_then_logout(client, physician):
    response = client.post(
        reverse("login"), {"username": physician.username, "password": PASSWORD}
    )
    assert response.status_code == 302 and response.url == reverse("home")
    assert client.get(reverse("home")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("home")).status_code == 302


def test_wrong_password_shows_an_error(client, physician):
    response = client.post(
        reverse("login"), {"username": physician.username, "password": "wrong"}
    )
    assert response.status_code == 200
    assert "didn't match" in response.content.decode()


def test_repeated_failures_lock_the_account_even_for_the_right_password(
    client, physician, settings
):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(
            reverse("login"), {"username": physician.username, "password": "no"}
        )
    response = client.post(
        reverse("login"), {"username": physician.username, "password": PASSWORD}
    )
    assert response.status_code == 429
    assert "Too many failed log-in attempts" in response.content.decode()
    assert client.get(reverse("home")).status_code == 302


def test_htmx_requests_carry_the_csrf_token_from_the_body(client, physician):
    client.force_login(physician)
    html = client.get(reverse("home")).content.decode()
    assert 'hx-headers=\'{"X-CSRFToken": "' in html
