"""Image files: served only to those allowed, named by uid only."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotations.rating.serving import assignment_next

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_physician_fetches_the_image_served_to_them_as_the_round_shows_it(
    client, make_round, physician
):
    rnd = make_round(2)
    image = assignment_next(round=rnd, rater=physician).round_image.image
    client.force_login(physician)
    response = client.get(reverse("rate-image", args=[rnd.pk, image.uid]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.uid.hex in response["Content-Disposition"]


def test_physician_never_gets_the_stored_file_or_preview(client, make_round, physician):
    """The stored file has the source's size and layout; a physician sees
    images only as their round presents them."""
    rnd = make_round(2)
    image = assignment_next(round=rnd, rater=physician).round_image.image
    client.force_login(physician)
    assert client.get(reverse("image-preview", args=[image.uid])).status_code == 404
    assert client.get(reverse("image-file", args=[image.uid])).status_code == 404


def test_admin_still_fetches_stored_files(client, make_round, admin_user):
    image = make_round(1).items.get().image
    client.force_login(admin_user)
    response = client.get(reverse("image-file", args=[image.uid]))
    assert response.status_code == 200


def test_physician_cannot_fetch_an_image_not_served_to_them(
    client, make_round, physician
):
    rnd = make_round(2)
    served = assignment_next(round=rnd, rater=physician).round_image.image
    other = rnd.items.exclude(image=served).get().image
    client.force_login(physician)
    assert client.get(reverse("image-preview", args=[other.uid])).status_code == 404
    assert client.get(reverse("image-file", args=[other.uid])).status_code == 404
    url = reverse("rate-image", args=[rnd.pk, other.uid])
    assert client.get(url).status_code == 404


def test_unknown_uid_is_404(client, admin_user):
    client.force_login(admin_user)
    url = reverse("image-file", args=["00000000-0000-0000-0000-000000000000"])
    assert client.get(url).status_code == 404


def test_anonymous_is_sent_to_log_in(client, make_round):
    image = make_round(1).items.get().image
    response = client.get(reverse("image-preview", args=[image.uid]))
    assert response.status_code == 302


def test_headers_name_nothing_but_the_uid(client, make_round, researcher):
    image = make_round(1).items.get().image
    client.force_login(researcher)
    response = client.get(reverse("image-file", args=[image.uid]))
    assert response.status_code == 200
    headers = " ".join(f"{k}: {v}" for k, v in response.headers.items()).lower()
    for leak in ("real", "generated", "round", "model", image.dataset.name.lower()):
        assert leak not in headers
    assert response["Cache-Control"].startswith("private")


def test_quarantined_image_is_hidden_from_researchers_but_not_admins(
    client, make_round, researcher, admin_user
):
    image = make_round(1).items.get().image
    image.quarantined = True
    image.save(update_fields=["quarantined"])
    url = reverse("image-preview", args=[image.uid])
    client.force_login(researcher)
    assert client.get(url).status_code == 404
    client.force_login(admin_user)
    assert client.get(url).status_code == 200
