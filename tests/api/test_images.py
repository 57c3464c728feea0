"""Image metadata and files: blinded for physicians, full for staff."""

from __future__ import annotations

import pytest

from annotations.models import Role
from tests.factories import ImageFactory

pytestmark = pytest.mark.django_db


def test_physician_sees_only_blinded_metadata_of_a_served_image(
    client_as, make_round, served
):
    client = client_as(Role.PHYSICIAN)
    image = served(make_round(1), client.user)
    body = client.get(f"/api/images/{image.uid}/").json()
    # Not the stored size: that would tell a 512 px control from a 32 px
    # generated image.
    assert set(body) == {"uid", "prompt", "modality"}


def test_staff_see_source_dataset_and_model(client_as, make_round):
    image = make_round(1).items.first().image
    for role in (Role.RESEARCHER, Role.ADMIN):
        body = client_as(role).get(f"/api/images/{image.uid}/").json()
        assert body["source"] == "real"
        assert body["dataset"] == image.dataset_id
        assert "model_version" in body and "header" in body


def test_physician_cannot_fetch_an_image_served_to_someone_else(
    client_as, make_round, served, make_user
):
    client = client_as(Role.PHYSICIAN)
    rnd = make_round(2)
    image = served(rnd, make_user(Role.PHYSICIAN))
    assert client.get(f"/api/images/{image.uid}/").status_code == 404
    assert client.get(f"/api/images/{image.uid}/file/").status_code == 404


def test_file_and_preview_are_the_stored_pngs(client_as):
    image = ImageFactory()
    client = client_as(Role.RESEARCHER)
    full = client.get(f"/api/images/{image.uid}/file/")
    preview = client.get(f"/api/images/{image.uid}/file/?preview=1")
    assert full.status_code == preview.status_code == 200
    assert full["Content-Type"] == "image/png"
    assert b"".join(full.streaming_content) == image.file.open("rb").read()
    assert b"".join(preview.streaming_content) == image.preview.open("rb").read()
    assert "private" in full["Cache-Control"]


def test_file_answers_a_client_that_accepts_only_png(client_as):
    image = ImageFactory()
    response = client_as(Role.ADMIN).get(
        f"/api/images/{image.uid}/file/", HTTP_ACCEPT="image/png"
    )
    assert response.status_code == 200


def test_unknown_uid_is_404(client_as):
    response = client_as(Role.ADMIN).get(
        "/api/images/00000000-0000-4000-8000-000000000000/"
    )
    assert response.status_code == 404
