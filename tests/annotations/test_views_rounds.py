"""Admin round pages: list, create over a selection of images, open, close."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotations.models import Round, RoundStatus
from tests.factories import DatasetFactory, ImageFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _form(**overrides):
    data = {
        "name": "chest round",
        "raters_per_image": 2,
        "control_percent": 0,
        "open_now": "on",
    }
    data.update(overrides)
    return data


def test_create_round_over_a_dataset_and_modality(client, admin_user, physician):
    wanted = DatasetFactory(name="wanted")
    ImageFactory.create_batch(3, dataset=wanted, modality="ct")
    ImageFactory.create_batch(2, dataset=wanted, modality="mr")
    ImageFactory.create_batch(2, modality="ct")
    client.force_login(admin_user)
    data = _form(datasets=[wanted.pk], modalities=["ct"], raters=[physician.pk])
    response = client.post(reverse("rounds-create"), data)
    assert response.status_code == 302
    rnd = Round.objects.get(name="chest round")
    assert rnd.status == RoundStatus.RATING
    assert rnd.raters_per_image == 2
    assert list(rnd.raters.all()) == [physician]
    images = [item.image for item in rnd.items.select_related("image")]
    assert len(images) == 3
    assert {(im.dataset_id, im.modality) for im in images} == {(wanted.pk, "ct")}


def test_max_images_takes_a_sample(client, admin_user):
    ImageFactory.create_batch(5)
    client.force_login(admin_user)
    client.post(reverse("rounds-create"), _form(max_images=2))
    assert Round.objects.get().items.count() == 2


def test_control_share_adds_real_controls(client, admin_user):
    ImageFactory.create_batch(6)
    client.force_login(admin_user)
    client.post(reverse("rounds-create"), _form(max_images=3, control_percent=25))
    rnd = Round.objects.get()
    assert rnd.items.filter(is_control=True).count() == 1
    assert rnd.control_share == 0.25


def test_no_matching_image_is_a_form_error(client, admin_user):
    ImageFactory(modality="ct")
    client.force_login(admin_user)
    response = client.post(
        reverse("rounds-create"), _form(modalities=["ct"], source="generated")
    )
    assert response.status_code == 400
    assert "No image matches" in response.content.decode()
    assert not Round.objects.exists()


def test_too_many_controls_is_shown_as_an_error(client, admin_user):
    ImageFactory.create_batch(2)
    client.force_login(admin_user)
    response = client.post(reverse("rounds-create"), _form(control_percent=90))
    assert response.status_code == 400
    assert "real control images" in response.content.decode()


def test_close_via_htmx_returns_the_updated_row(client, admin_user, make_round):
    rnd = make_round(1)
    client.force_login(admin_user)
    response = client.post(reverse("rounds-close", args=[rnd.pk]), **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith(f'<tr id="round-{rnd.pk}"')
    assert "Closed" in html
    rnd.refresh_from_db()
    assert rnd.status == RoundStatus.CLOSED


def test_reopening_a_closed_round_is_refused_with_a_message(
    client, admin_user, make_round
):
    rnd = make_round(1)
    client.force_login(admin_user)
    client.post(reverse("rounds-close", args=[rnd.pk]))
    response = client.post(reverse("rounds-open", args=[rnd.pk]), **HTMX)
    assert response.status_code == 400
    assert "cannot be reopened" in response.content.decode()


def test_open_a_draft_round(client, admin_user, make_round):
    rnd = make_round(1, open_now=False)
    client.force_login(admin_user)
    response = client.post(reverse("rounds-open", args=[rnd.pk]))
    assert response.status_code == 302
    rnd.refresh_from_db()
    assert rnd.status == RoundStatus.RATING
