"""A plain round's real controls: the rounds page and ``POST /api/rounds/``
draw them through one definition (``annotations.selectors.control_pool``):
real, not quarantined, of the chosen images' own modalities."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotations.models import Round
from annotations.selectors import control_pool
from tests.factories import DatasetFactory, ImageFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def world() -> dict[str, Any]:
    chosen = DatasetFactory(name="chosen")
    images = ImageFactory.create_batch(2, dataset=chosen, modality="ct")
    elsewhere = DatasetFactory(name="elsewhere")
    ct = ImageFactory.create_batch(3, dataset=elsewhere, modality="ct")
    ImageFactory.create_batch(6, dataset=elsewhere, modality="fundus")
    ImageFactory(dataset=elsewhere, modality="ct", quarantined=True)
    return {"dataset": chosen, "images": images, "ct": ct}


def _controls(rnd: Round) -> set[int]:
    return set(rnd.items.filter(is_control=True).values_list("image_id", flat=True))


def test_the_page_and_the_api_draw_controls_of_the_chosen_modality_only(
    client, admin_user, world
):
    client.force_login(admin_user)
    page = client.post(
        reverse("rounds-create"),
        {
            "name": "page",
            "raters_per_image": 1,
            "control_percent": 50,
            "datasets": [world["dataset"].pk],
        },
    )
    assert page.status_code == 302
    api = APIClient()
    api.force_authenticate(admin_user)
    response = api.post(
        "/api/rounds/",
        {
            "name": "api",
            "image_uids": [str(im.uid) for im in world["images"]],
            "control_share": 0.5,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    allowed = {im.pk for im in world["ct"]}
    for rnd in Round.objects.all():
        assert len(_controls(rnd)) == 2
        assert _controls(rnd) <= allowed


def test_the_pool_is_real_unquarantined_and_of_the_given_modalities(world):
    pool = control_pool(modalities=["ct"])
    assert {im.pk for im in pool} == {im.pk for im in world["ct"] + world["images"]}
    scoped = control_pool(modalities={"ct"}, dataset=world["dataset"])
    assert {im.pk for im in scoped} == {im.pk for im in world["images"]}
    assert not control_pool(modalities=[]).exists()
