"""Attacks on the client address: dodging the login throttle with a forged
X-Forwarded-For, and locking everyone out behind the TLS proxy.

One setting (TRUSTED_PROXY_HOPS) says how many proxies append to
X-Forwarded-For; the lockout, the throttles and the audit log all take the
client's address from it, the same way.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from annotations.models import AuditEvent

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"  # set by tests.factories.UserFactory
TOKEN_URL = "/api/auth/token/"
PROXY = "10.0.0.1"


@pytest.fixture
def tight_login_rate(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "login": "2/minute",
        },
    }


def _login(username: str, password: str, *, forwarded: str | None = None):
    client = APIClient(REMOTE_ADDR=PROXY)
    extra = {} if forwarded is None else {"HTTP_X_FORWARDED_FOR": forwarded}
    return client.post(TOKEN_URL, {"username": username, "password": password}, **extra)


def test_a_forged_forwarded_for_does_not_dodge_the_throttle(
    physician, tight_login_rate
):
    codes = [
        _login(physician.username, PASSWORD, forwarded=f"203.0.113.{i}").status_code
        for i in range(3)
    ]
    assert codes == [200, 200, 429]


def test_behind_the_proxy_the_throttle_counts_each_client(
    physician, settings, tight_login_rate
):
    settings.TRUSTED_PROXY_HOPS = 1
    first = [
        _login(physician.username, PASSWORD, forwarded="198.51.100.7").status_code
        for _ in range(3)
    ]
    other = _login(physician.username, PASSWORD, forwarded="198.51.100.8")
    assert first == [200, 200, 429]
    assert other.status_code == 200


def test_behind_the_proxy_one_client_cannot_lock_the_account_for_everyone(
    physician, settings
):
    settings.TRUSTED_PROXY_HOPS = 1
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(physician.username, "wrong", forwarded="198.51.100.66")
    assert (
        _login(physician.username, PASSWORD, forwarded="198.51.100.66").status_code
        == 429
    )
    assert (
        _login(physician.username, PASSWORD, forwarded="198.51.100.9").status_code
        == 200
    )


def test_the_audit_log_records_the_client_not_the_proxy_nor_a_forged_entry(
    physician, settings
):
    settings.TRUSTED_PROXY_HOPS = 1
    _login(physician.username, PASSWORD, forwarded="6.6.6.6, 198.51.100.20")
    event = AuditEvent.objects.get(action="login")
    assert event.ip_address == "198.51.100.20"


def test_without_a_trusted_proxy_the_audit_log_ignores_the_header(physician):
    _login(physician.username, PASSWORD, forwarded="198.51.100.20")
    assert AuditEvent.objects.get(action="login").ip_address == PROXY


def test_a_malformed_forwarded_entry_falls_back_to_the_peer(physician, settings):
    settings.TRUSTED_PROXY_HOPS = 1
    _login(physician.username, PASSWORD, forwarded="not-an-ip")
    assert AuditEvent.objects.get(action="login").ip_address == PROXY
