"""Admins create, open and close rounds; staff and physicians see them differently."""

from __future__ import annotations

import pytest

from annotations.models import ImageSource, Role, Round, RoundStatus
from tests.factories import DatasetFactory, ImageFactory

pytestmark = pytest.mark.django_db


def test_admin_creates_an_open_round_from_a_dataset_with_raters(client_as, make_user):
    client = client_as(Role.ADMIN)
    dataset = DatasetFactory()
    ImageFactory.create_batch(3, dataset=dataset)
    ImageFactory(dataset=dataset, quarantined=True)
    ImageFactory()  # another dataset
    rater = make_user(Role.PHYSICIAN)
    body = {
        "name": "chest round",
        "dataset": dataset.pk,
        "raters_per_image": 2,
        "raters": [rater.pk],
        "open_now": True,
    }
    response = client.post("/api/rounds/", body, format="json")
    assert response.status_code == 201, response.content
    out = response.json()
    assert out["status"] == RoundStatus.RATING
    assert out["raters"] == [rater.pk]
    assert out["progress"]["total_items"] == 3
    assert out["progress"]["needed"] == 6
    assert Round.objects.get(pk=out["id"]).created_by == client.user


def test_round_can_be_made_of_chosen_images_plus_real_controls(client_as):
    client = client_as(Role.ADMIN)
    chosen = ImageFactory.create_batch(2, modality="mr")
    ImageFactory.create_batch(3, modality="mr", source=ImageSource.REAL)
    body = {
        "name": "r",
        "image_uids": [str(i.uid) for i in chosen],
        "control_share": 0.5,
    }
    response = client.post("/api/rounds/", body, format="json")
    assert response.status_code == 201, response.content
    rnd = Round.objects.get(pk=response.json()["id"])
    assert rnd.items.filter(is_control=False).count() == 2
    assert rnd.items.filter(is_control=True).count() == 2
    assert rnd.status == RoundStatus.DRAFT


def test_round_without_an_image_selection_is_refused(client_as):
    response = client_as(Role.ADMIN).post("/api/rounds/", {"name": "r"}, format="json")
    assert response.status_code == 400
    assert "dataset, modality or image_uids" in str(response.json())


def test_unknown_image_uids_are_named(client_as):
    uid = "00000000-0000-4000-8000-000000000001"
    response = client_as(Role.ADMIN).post(
        "/api/rounds/", {"name": "r", "image_uids": [uid]}, format="json"
    )
    assert response.status_code == 400
    assert uid in response.json()["image_uids"][0]


def test_raters_must_be_physicians(client_as, researcher):
    ImageFactory()
    response = client_as(Role.ADMIN).post(
        "/api/rounds/",
        {"name": "r", "modality": "ct", "raters": [researcher.pk]},
        format="json",
    )
    assert response.status_code == 400
    assert "raters" in response.json()


def test_a_selection_with_no_usable_image_is_a_domain_error_400(client_as):
    response = client_as(Role.ADMIN).post(
        "/api/rounds/", {"name": "r", "modality": "nothing"}, format="json"
    )
    assert response.status_code == 400
    assert "at least one image" in response.json()["detail"]


def test_a_closed_round_cannot_be_reopened(client_as, make_round):
    client = client_as(Role.ADMIN)
    rnd = make_round(1)
    closed = client.post(f"/api/rounds/{rnd.pk}/close/")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    reopened = client.post(f"/api/rounds/{rnd.pk}/open/")
    assert reopened.status_code == 400
    assert reopened.json()["detail"] == "a closed round cannot be reopened"


def test_physicians_see_only_open_rounds_and_no_round_internals(
    client_as, make_round, admin_user
):
    open_round = make_round(1, name="open")
    make_round(1, name="draft", open_now=False)
    client = client_as(Role.PHYSICIAN)
    listed = client.get("/api/rounds/").json()["results"]
    assert [r["name"] for r in listed] == ["open"]
    assert set(listed[0]) == {"id", "name", "description", "status"}
    detail = client.get(f"/api/rounds/{open_round.pk}/").json()
    assert "model_version" not in detail and "raters" not in detail
    assert detail["progress"]["my_remaining"] == 1


def test_researchers_see_every_round_with_its_settings(client_as, make_round):
    make_round(1, open_now=False)
    make_round(1)
    listed = client_as(Role.RESEARCHER).get("/api/rounds/").json()
    assert listed["count"] == 2
    assert "control_share" in listed["results"][0]
